// The log-prob gathering family under its issue's name: gatherLogprobs, linearLogprobs and their
// backwards live in gather.ts.
export * from './gather.js';

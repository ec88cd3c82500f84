// Whether two tensors share memory: a kernel that writes `out` while it reads an input gives
// wrong numbers when the two overlap partially (a row written before it is read), so such calls
// are refused; the exact same elements (an in-place update the kernel supports) are allowed where
// the kernel says so.
import type { Tensor } from '../tensor.js';
import { DTYPE_SIZE } from '../tensor.js';

/** The byte range [lo, hi) a tensor's elements span in its storage (empty: null). */
function span(t: Tensor): [number, number] | null {
  if (t.numel === 0) return null;
  let lo = t.offset, hi = t.offset;
  t.shape.forEach((d, i) => {
    const s = (d - 1) * t.strides[i]!;
    if (s > 0) hi += s; else lo += s;
  });
  const es = DTYPE_SIZE[t.dtype];
  return [lo * es, (hi + 1) * es];
}

/**
 * 'none' when a and b cannot touch the same bytes, 'same' when they are the same elements in the
 * same layout, 'partial' otherwise.
 */
export function overlap(a: Tensor, b: Tensor): 'none' | 'same' | 'partial' {
  if (a._desc().h !== b._desc().h) return 'none';
  const ra = span(a), rb = span(b);
  if (!ra || !rb || ra[1] <= rb[0] || rb[1] <= ra[0]) return 'none';
  const same = a.offset * DTYPE_SIZE[a.dtype] === b.offset * DTYPE_SIZE[b.dtype] && a.dtype === b.dtype &&
    a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i] && (d === 1 || a.strides[i] === b.strides[i]));
  return same ? 'same' : 'partial';
}

/** Throws a RangeError when `out` shares memory with `input` (other than being it, when `inPlace`). */
export function checkNoOverlap(outName: string, out: Tensor, inputName: string, input: Tensor, opts: { inPlace?: boolean } = {}): void {
  const o = overlap(out, input);
  if (o === 'none' || (o === 'same' && opts.inPlace)) return;
  throw new RangeError(`Expected ${outName} ${opts.inPlace ? `to be ${inputName} itself or` : ''} not to share memory with ${inputName} but received ${o === 'same' ? 'the same tensor' : 'a view that overlaps it'}${opts.inPlace ? '' : ' (the kernel would read what it has already written)'}`.replace('  ', ' '));
}

"""Independent float64 reference of the Qwen2.5-VL image/video processor for test/processor.test.ts.

Usage: processor_ref.py DIR. Reads DIR/case.json, writes DIR/out.json, DIR/out_<i>.bin (float64 patches)
and DIR/ties_<i>.bin (u8: 1 where the value before rounding to u8 was a half, to within 1e-9).

It follows the published formulas: Qwen2-VL smart_resize (qwen-vl-utils), qwen-vl-utils'
smart_nframes / torch.linspace(...).round() frame sampling and per-frame video pixel budget,
torch.nn.functional.interpolate(mode='bicubic', antialias=True, align_corners=False) in float64
followed by rounding half up and clamping to u8 (PIL and torchvision both hand u8 frames on),
rescale, normalise, pad to the temporal patch size and the Qwen2VLImageProcessor patch order.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

FRAME_FACTOR = 2
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
VIDEO_TOTAL_PIXELS = int(float(128000 * 28 * 28 * 0.9))


def round_by_factor(n, f):
    return round(n / f) * f


def ceil_by_factor(n, f):
    return math.ceil(n / f) * f


def floor_by_factor(n, f):
    return math.floor(n / f) * f


def smart_resize(height, width, factor, min_pixels, max_pixels):
    if max(height, width) / min(height, width) > 200:
        raise ValueError("aspect ratio")
    h_bar = max(factor, round_by_factor(height, factor))
    w_bar = max(factor, round_by_factor(width, factor))
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, floor_by_factor(height / beta, factor))
        w_bar = max(factor, floor_by_factor(width / beta, factor))
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = ceil_by_factor(height * beta, factor)
        w_bar = ceil_by_factor(width * beta, factor)
    return h_bar, w_bar


def smart_nframes(ele, total_frames, video_fps):
    if "nframes" in ele:
        nframes = round_by_factor(ele["nframes"], FRAME_FACTOR)
    else:
        fps = ele.get("fps", 2.0)
        min_frames = ceil_by_factor(ele.get("min_frames", 4), FRAME_FACTOR)
        max_frames = floor_by_factor(ele.get("max_frames", min(768, total_frames)), FRAME_FACTOR)
        nframes = total_frames / video_fps * fps
        nframes = min(min(max(nframes, min_frames), max_frames), total_frames)
        nframes = floor_by_factor(nframes, FRAME_FACTOR)
    if not (FRAME_FACTOR <= nframes <= total_frames):
        raise ValueError("nframes out of range")
    return nframes


def video_bounds(nframes, ele):
    min_pixels = ele.get("min_pixels", VIDEO_MIN_PIXELS)
    total_pixels = ele.get("total_pixels", VIDEO_TOTAL_PIXELS)
    max_pixels = max(min(VIDEO_MAX_PIXELS, total_pixels / nframes * FRAME_FACTOR), int(min_pixels * 1.05))
    max_pixels = min(ele.get("max_pixels", max_pixels), max_pixels)
    return min_pixels, max_pixels


def patchify(x, cfg):
    """[T, C, H, W] -> ([rows, C*tp*ps*ps], (gt, gh, gw)), padding T with the last frame."""
    tp, ps, m = cfg["temporal_patch_size"], cfg["patch_size"], cfg["merge_size"]
    if x.shape[0] % tp != 0:
        rep = x[-1:].repeat(tp - x.shape[0] % tp, 1, 1, 1)
        x = torch.cat([x, rep], 0)
    c, rh, rw = x.shape[1], x.shape[2], x.shape[3]
    gt, gh, gw = x.shape[0] // tp, rh // ps, rw // ps
    x = x.reshape(gt, tp, c, gh // m, m, ps, gw // m, m, ps).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tp * ps * ps).numpy(), (gt, gh, gw)


def process(frames_u8, rh, rw, cfg):
    """frames_u8: uint8 [T, H, W, 3] -> (float64 patches, u8 tie mask in the same layout, grid).

    The tie mask marks values whose resized (pre-rounding) value lies within 1e-9 of a half: there
    float64 summation order decides the rounding, so any two implementations may differ by one level.
    """
    x = torch.from_numpy(frames_u8.astype(np.float64)).permute(0, 3, 1, 2).contiguous()
    if (x.shape[2], x.shape[3]) != (rh, rw):
        x = F.interpolate(x, size=(rh, rw), mode="bicubic", antialias=True, align_corners=False)
    ties = ((x - torch.floor(x) - 0.5).abs() < 1e-9).double()
    x = torch.floor(x + 0.5).clamp(0, 255)
    mean = torch.tensor(cfg["image_mean"], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(cfg["image_std"], dtype=torch.float64).view(1, 3, 1, 1)
    x = (x * cfg["rescale_factor"] - mean) / std
    pv, grid = patchify(x, cfg)
    tie_mask, _ = patchify(ties, cfg)
    return pv, tie_mask.astype(np.uint8), grid


# The Qwen2-VL image processor's defaults as transformers defines them (Qwen2VLImageProcessor:
# min_pixels 56 * 56, max_pixels 28 * 28 * 1280, patch 14, temporal patch 2, merge 2, the OpenAI
# CLIP mean and std, rescale 1 / 255), written here rather than taken from the implementation
# under test: an item without a config of its own is processed with these.
HF_DEFAULTS = {
    "min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "rescale_factor": 1 / 255,
}


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "case.json")) as f:
        case = json.load(f)
    out = {"smart_resize": [], "nframes": [], "items": []}
    for h, w, factor, mn, mx in case.get("smart_resize", []):
        try:
            out["smart_resize"].append(list(smart_resize(h, w, factor, mn, mx)))
        except ValueError:
            out["smart_resize"].append("error")
    for total, vfps, ele in case.get("nframes", []):
        try:
            n = smart_nframes(ele, total, vfps)
        except ValueError:
            out["nframes"].append("error")
            continue
        idx = torch.linspace(0, total - 1, n).round().long().tolist()
        out["nframes"].append([n, idx, n / max(total, 1e-6) * vfps])
    for i, it in enumerate(case.get("items", [])):
        cfg = {**HF_DEFAULTS, **it.get("config", {})}
        fr = np.fromfile(os.path.join(d, it["file"]), dtype=np.uint8).reshape(it["shape"])
        T, H, W = fr.shape[0], fr.shape[1], fr.shape[2]
        factor = cfg["patch_size"] * cfg["merge_size"]
        if it["kind"] == "image":
            rh, rw = smart_resize(H, W, factor, it.get("min_pixels", cfg["min_pixels"]), it.get("max_pixels", cfg["max_pixels"]))
            sec = None
        else:
            ele = it.get("ele", {})
            if "video_fps" in it:
                n = smart_nframes(ele, T, it["video_fps"])
                idx = torch.linspace(0, T - 1, n).round().long()
                fr = fr[idx.numpy()]
                sample_fps = n / max(T, 1e-6) * it["video_fps"]
            else:
                sample_fps = ele.get("fps", 2.0)
            mn, mx = video_bounds(fr.shape[0], ele)
            rh, rw = smart_resize(H, W, factor, mn, mx)
            sec = cfg["temporal_patch_size"] / sample_fps
        pv, ties, grid = process(fr, rh, rw, cfg)
        np.ascontiguousarray(pv, dtype=np.float64).tofile(os.path.join(d, f"out_{i}.bin"))
        np.ascontiguousarray(ties).tofile(os.path.join(d, f"ties_{i}.bin"))
        out["items"].append({"grid": list(grid), "shape": list(pv.shape), "second_per_grid_t": sec, "size": [rh, rw]})
    with open(os.path.join(d, "out.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()

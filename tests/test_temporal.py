"""Temporal smoother: pass-through, known motion, cuts, window edges, resume determinism.

Everything is synthetic and tiny (64 x 96 frames), so the file runs in seconds on CPU.
"""
from __future__ import annotations

import math
from typing import Iterator

import pytest
import torch
import torch.nn.functional as F

from vidcolor import temporal
from vidcolor.temporal import Item, Smoother

H, W = 64, 96


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors: thread hand-offs cost more than the work, badly so on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def texture(h: int, w: int, seed: int, lo: float = 20.0, hi: float = 80.0) -> torch.Tensor:
    """Smooth random texture (1, h, w) in [lo, hi]: enough structure for flow."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 1, h // 4 + 2, w // 4 + 2, generator=g)
    x = F.interpolate(x, size=(h + 8, w + 8), mode="bicubic", align_corners=False)[0, :, 4:-4, 4:-4]
    x = (x - x.min()) / (x.max() - x.min())
    return lo + (hi - lo) * x


def flicker(n: int, seed: int, amp: float = 8.0) -> torch.Tensor:
    """Per-frame global ab offsets (n, 2, 1, 1): the per-frame model's flicker."""
    g = torch.Generator().manual_seed(seed)
    return amp * (2 * torch.rand(n, 2, 1, 1, generator=g) - 1)


def run(sm: Smoother, items: list[Item]) -> dict[int, torch.Tensor]:
    """Push every item, flush, check order, return {index: output ab}."""
    out = []
    for it in items:
        out += sm.push(it)
    out += sm.flush()
    assert [o.index for o in out] == [it.index for it in items]
    return {o.index: o.ab for o in out}


def copy_items(Ls: list[torch.Tensor], abs_: list[torch.Tensor], start: int = 0) -> list[Item]:
    return [Item(i, Ls[i].clone(), abs_[i].clone(), payload=i) for i in range(start, len(Ls))]


def moving_disc_clip(n: int = 14, step: int = 3, r: int = 8) -> tuple[list, list, list, torch.Tensor, torch.Tensor]:
    """Static textured background, bright textured disc moving right by ``step`` px a frame.

    Returns L and ab per frame, each pixel's distance from the disc centre per frame,
    and the background's and the disc's true ab."""
    bg = texture(H, W, 1, 20.0, 50.0)
    obj = texture(H, W, 2, 75.0, 95.0)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ab_bg, ab_obj = torch.tensor([-20.0, 20.0]), torch.tensor([50.0, 50.0])
    fl = flicker(n, 3, 5.0)
    Ls, abs_, dists = [], [], []
    for t in range(n):
        cx, cy = 14 + step * t, H // 2
        d = ((xx - cx) ** 2 + (yy - cy) ** 2).float().sqrt()
        m = (d <= r).float()[None]
        # the disc carries its texture along (obj shifted with it), so flow can follow it
        o = torch.roll(obj, shifts=step * t, dims=2)
        Ls.append(m * o + (1 - m) * bg)
        abs_.append(m * ab_obj.view(2, 1, 1) + (1 - m) * ab_bg.view(2, 1, 1) + fl[t])
        dists.append(d)
    return Ls, abs_, dists, ab_bg, ab_obj


# -- window 0 -------------------------------------------------------------------------------

def test_window_zero_is_exact_pass_through():
    sm = Smoother(0)
    assert sm.warmup == 0
    it = Item(0, torch.rand(1, 8, 8) * 100, torch.randn(2, 8, 8))
    ab = it.ab
    out = sm.push(it)
    assert len(out) == 1 and out[0] is it and out[0].ab is ab
    assert sm.flush() == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        Smoother(-1)
    with pytest.raises(ValueError):
        Smoother(2, cut_threshold=1.5)
    sm = Smoother(2)
    sm.push(Item(0, torch.rand(1, 32, 32) * 100, torch.zeros(2, 32, 32)))
    with pytest.raises(ValueError):
        sm.push(Item(2, torch.rand(1, 32, 32) * 100, torch.zeros(2, 32, 32)))


# -- known motion ---------------------------------------------------------------------------

def test_moving_object_leaves_no_trail_and_flicker_drops():
    Ls, abs_, dists, ab_bg, ab_obj = moving_disc_clip()
    n = len(Ls)
    out = run(Smoother(3), copy_items(Ls, abs_))
    axis = (ab_obj - ab_bg) / (ab_obj - ab_bg).norm()

    def trail(ab: torch.Tensor, t: int) -> float:
        """Largest pull of a background pixel toward the object's colour, relative to the
        background's median (flicker, and its smoothing, shift the whole frame alike)."""
        along = (ab * axis.view(2, 1, 1)).sum(0)[dists[t] > 11]  # clear of the disc (r = 8) and a margin
        return float((along - along.median()).max())

    naive_max, ours_max = 0.0, 0.0
    for t in range(3, n - 3):
        naive = torch.stack(abs_[t - 3:t + 4]).mean(0)  # plain averaging, for contrast
        naive_max = max(naive_max, trail(naive, t))
        ours_max = max(ours_max, trail(out[t], t))
        inside = dists[t] <= 5
        assert float(((out[t] - ab_bg.view(2, 1, 1)) * axis.view(2, 1, 1)).sum(0)[inside].min()) > 60.0
    assert naive_max > 9.0, "the clip must be one where plain averaging leaves a trail"
    assert ours_max < 3.0, f"colour trail behind the moving object: {ours_max:.2f} ab units"
    # flicker: the frame-to-frame spread of the background colour shrinks
    bg_mean = lambda ab, t: ab[:, dists[t] > 11].mean(1)  # noqa: E731
    before = torch.stack([bg_mean(abs_[t], t) for t in range(n)]).std(0).mean()
    after = torch.stack([bg_mean(out[t], t) for t in range(n)]).std(0).mean()
    assert after < 0.6 * before


def test_translated_pattern_keeps_its_colour():
    """A pan: colour is tied to the content, which moves 2 px a frame; smoothing must follow it."""
    n, step = 10, 2
    big_L = texture(H, W + step * n, 5)
    big_a = texture(H, W + step * n, 6, -40.0, 40.0)
    fl = flicker(n, 7)
    Ls = [big_L[:, :, step * t:step * t + W] for t in range(n)]
    truth = [torch.cat([big_a[:, :, step * t:step * t + W], -big_a[:, :, step * t:step * t + W]]) for t in range(n)]
    preds = [truth[t] + fl[t] for t in range(n)]
    out = run(Smoother(3), copy_items(Ls, preds))
    core = (slice(None), slice(6, -6), slice(12, -12))  # away from where content enters and leaves
    err_pf = torch.stack([(preds[t] - truth[t])[core].abs().mean() for t in range(n)]).mean()
    err_sm = torch.stack([(out[t] - truth[t])[core].abs().mean() for t in range(n)]).mean()
    naive = [torch.stack(preds[max(0, t - 3):t + 4]).mean(0) for t in range(n)]
    err_naive = torch.stack([(naive[t] - truth[t])[core].abs().mean() for t in range(n)]).mean()
    assert err_sm < 0.6 * err_pf
    assert err_sm < 0.6 * err_naive  # motion compensation, not just averaging


# -- cuts -----------------------------------------------------------------------------------

def two_shots(n1: int = 8, n2: int = 8) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Two still shots of different textures and colours, with per-frame flicker."""
    a, b = texture(H, W, 11), texture(H, W, 12)
    fl = flicker(n1 + n2, 13)
    Ls = [a.clone() for _ in range(n1)] + [b.clone() for _ in range(n2)]
    abs_ = [torch.tensor([-30.0, 10.0]).view(2, 1, 1).expand(2, H, W) + fl[t] for t in range(n1)] + \
           [torch.tensor([40.0, 40.0]).view(2, 1, 1).expand(2, H, W) + fl[n1 + t] for t in range(n2)]
    return Ls, abs_


def test_cut_is_found_and_shots_are_fresh_starts():
    Ls, abs_ = two_shots()
    sm = Smoother(3)
    out = run(sm, copy_items(Ls, abs_))
    assert sm.cuts == [8]
    after = run(Smoother(3), copy_items(Ls, abs_, start=8))
    before = run(Smoother(3), copy_items(Ls[:8], abs_[:8]))
    for t in range(16):
        assert torch.equal(out[t], after[t] if t >= 8 else before[t]), t
    # nothing bled across: the first frame of shot 2 is far from shot 1's colour
    assert float(out[8][0].mean()) > 30.0 and float(out[7][0].mean()) < -20.0


def test_cut_threshold_one_finds_no_cut():
    Ls, abs_ = two_shots()
    sm = Smoother(3, cut_threshold=1.0)
    run(sm, copy_items(Ls, abs_))
    assert sm.cuts == []


def test_flash_and_flicker_are_not_cuts():
    n = 16
    base = texture(H, W, 21)
    g = torch.Generator().manual_seed(22)
    gains = 1.0 + 0.1 * (2 * torch.rand(n, generator=g) - 1)
    gains[7] = 1.8  # one overexposed frame
    Ls = [(base * gains[t]).clamp(0, 100) for t in range(n)]
    abs_ = [torch.zeros(2, H, W) for _ in range(n)]
    sm = Smoother(3)
    run(sm, copy_items(Ls, abs_))
    assert sm.cuts == []


# -- window edges ---------------------------------------------------------------------------

def test_window_edges_use_only_frames_in_the_window():
    """Still scene, each frame's ab a distinct constant: output = taper-weighted mean over the
    frames within the window, clipped at the clip's start and end."""
    n, w = 9, 3
    L = texture(H, W, 31)
    vals = torch.tensor([0.0, 10.0, -10.0, 20.0, 40.0, -20.0, 5.0, 15.0, 30.0])
    abs_ = [torch.full((2, H, W), float(v)) for v in vals]
    out = run(Smoother(w), copy_items([L] * n, abs_))
    for t in range(n):
        ks = range(max(0, t - w), min(n, t + w + 1))
        wt = torch.tensor([math.exp(math.log(temporal.TAPER) * ((k - t) / w) ** 2) for k in ks])
        expect = float((wt * vals[list(ks)]).sum() / wt.sum())
        assert torch.allclose(out[t], torch.full_like(out[t], expect), atol=1e-3), (t, float(out[t].mean()), expect)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_clips_shorter_than_the_window(n):
    L = texture(H, W, 41)
    abs_ = [torch.full((2, H, W), float(10 * k)) for k in range(n)]
    items = copy_items([L] * n, abs_)
    sm = Smoother(4)
    out = run(sm, items)
    assert len(out) == n
    if n == 1:
        assert torch.equal(out[0], abs_[0])


def test_frame_size_change_is_a_cut():
    """A folder of frames can change size mid-way: no smoothing across it, and no crash."""
    big, small = texture(H, W, 61), texture(48, 80, 62)
    Ls = [big] * 4 + [small] * 4
    abs_ = [torch.zeros(2, *L.shape[-2:]) + k for k, L in enumerate(Ls)]
    sm = Smoother(2)
    out = run(sm, copy_items(Ls, abs_))
    assert sm.cuts == [4]
    assert all(out[t].shape[-2:] == Ls[t].shape[-2:] for t in out)
    tau = [math.exp(math.log(temporal.TAPER) * (k / 2) ** 2) for k in range(3)]
    expect = (4 * tau[0] + 5 * tau[1] + 6 * tau[2]) / sum(tau)  # frames 4, 5, 6 only: none of 2, 3
    assert torch.allclose(out[4], torch.full_like(out[4], expect), atol=1e-3)


def test_thread_setting_is_restored():
    torch.set_num_threads(2)
    try:
        sm = Smoother(1)
        for t in range(4):
            sm.push(Item(t, texture(H, W, 71), torch.zeros(2, H, W)))
            assert torch.get_num_threads() == 2
        sm.flush()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_buffer_is_bounded():
    w = 2
    sm = Smoother(w)
    L = texture(H, W, 51)
    for t in range(12):
        sm.push(Item(t, L.clone(), torch.zeros(2, H, W)))
        assert len(sm._frames) <= 2 * w + 2
        assert len(sm._pairs) <= 2 * w + 2


# -- determinism and resume -----------------------------------------------------------------

@pytest.mark.parametrize("window", [1, 3])
def test_resume_is_bit_identical(window):
    """A run resumed at ``start`` (fed from start - warmup, outputs before start discarded)
    gives exactly the bits of the uninterrupted run."""
    Ls, abs_, _, _, _ = moving_disc_clip(n=12)
    Ls[5] = (Ls[5] * 1.8).clamp(0, 100)  # a flash: only the left context at 6 tells it from a cut
    Ls2, abs2 = two_shots(6, 6)
    Ls, abs_ = Ls + Ls2, abs_ + abs2  # motion, then a cut at 12, another at 18
    full_sm = Smoother(window)
    full = run(full_sm, copy_items(Ls, abs_))
    assert full_sm.cuts == [12, 18]
    for start in sorted({3, 5 + window, 6 + window, 9, 12, 13, 17, 19}):
        sm = Smoother(window)
        first = max(0, start - sm.warmup)
        resumed = run(sm, copy_items(Ls, abs_, start=first))
        for t in range(start, len(Ls)):
            assert torch.equal(resumed[t], full[t]), (window, start, t)
    again = run(Smoother(window), copy_items(Ls, abs_))
    assert all(torch.equal(again[t], full[t]) for t in full)


@pytest.mark.requires_cuda
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    Ls, abs_, _, _, _ = moving_disc_clip(n=8)
    cpu = run(Smoother(2), copy_items(Ls, abs_))
    items = [Item(it.index, it.L.cuda(), it.ab.cuda()) for it in copy_items(Ls, abs_)]
    gpu = run(Smoother(2), items)
    for t in cpu:
        assert gpu[t].device.type == "cuda"
        assert torch.allclose(gpu[t].cpu(), cpu[t], atol=0.05)


@pytest.mark.parametrize("shift", [(0.6, -0.3), (2.5, 1.5), (4.0, -3.0)])
def test_lk_flow_recovers_a_known_shift_and_passes_its_own_consistency_check(shift: tuple[float, float]) -> None:
    """A texture moved by a known sub-pixel and a multi-pixel shift: the flow finds it (inside a
    margin the shift does not reach) and the forward-backward check keeps nearly every pixel."""
    from vidcolor import flow as fl

    big = texture(H + 16, W + 16, seed=5)[None]
    dx, dy = shift
    grid = fl._base_grid(H + 16, W + 16, big) + torch.tensor([dx, dy]) * fl._scale(H + 16, W + 16, big)
    moved = F.grid_sample(big, grid, mode="bicubic", padding_mode="border", align_corners=True)
    I0, I1 = fl.standardize(moved[..., 8:-8, 8:-8]), fl.standardize(big[..., 8:-8, 8:-8])
    fw, bw = fl.lk_flow(I0, I1, radius=3), fl.lk_flow(I1, I0, radius=3)  # I1(x + fw) ~ I0(x)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    err = (fw - torch.tensor([dx, dy]).view(1, 2, 1, 1))[inner].norm(dim=1)
    assert float(err.median()) < 0.15, float(err.median())
    assert float(fl.fb_valid(fw, bw)[inner].mean()) > 0.9

import numpy as np
import pytest
import torch

from vidcolor.color import rgb_to_l, rgb_to_lab
from vidcolor.engine import Engine, render_shape, select_device
from vidcolor.errors import VidcolorError
from vidcolor.weights import load_model

from .conftest import frame_pattern


@torch.inference_mode()
def compose_batch(engine: Engine, frames: list[np.ndarray], ab: torch.Tensor) -> list[np.ndarray]:
    """RGB composition from the frames themselves (their L converted again), the reference that
    ``Engine.compose_l`` on the L kept by ``predict`` must equal."""
    return engine.compose_l(rgb_to_l(engine._upload(frames)), ab, frames[0].dtype)


@pytest.fixture(scope="module")
def engine(random_weights):
    return Engine(load_model(random_weights), "cpu", render_size=64)


def test_render_shape_keeps_aspect_and_short_side():
    assert render_shape(480, 854, 256) == (256, 456)
    assert render_shape(1080, 1920, 256) == (256, 456)
    assert render_shape(2, 2, 256) == (256, 256)
    h, w = render_shape(1001, 333, 128)
    assert w == 128 and h % 8 == 0


def test_batch_equals_singles(engine):
    frames = [frame_pattern(i, 80, 60, grey=False) for i in range(5)]
    batch = engine.predict(frames).ab
    singles = torch.cat([engine.predict([f]).ab for f in frames])
    assert batch.shape == singles.shape == (5, 2, 64, 88)
    assert (batch - singles).abs().max().item() < 1e-3
    out_b = compose_batch(engine, frames, batch)
    out_s = [compose_batch(engine, [f], a[None])[0] for f, a in zip(frames, singles)]
    for a, b in zip(out_b, out_s):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_compose_keeps_input_l_and_dtype(engine):
    f8 = frame_pattern(0, 50, 30)
    out = compose_batch(engine, [f8], engine.predict([f8]).ab)[0]
    assert out.dtype == np.uint8 and out.shape == f8.shape
    L_in = rgb_to_lab(torch.from_numpy(f8).permute(2, 0, 1).float() / 255)[0]
    L_out = rgb_to_lab(torch.from_numpy(out).permute(2, 0, 1).float() / 255)[0]
    # L survives except where the predicted colour leaves the sRGB gamut and is clipped
    assert (L_in - L_out).abs().mean().item() < 2.0
    f16 = f8.astype(np.uint16) * 257
    out16 = compose_batch(engine, [f16], engine.predict([f16]).ab)[0]
    assert out16.dtype == np.uint16 and out16.shape == f16.shape


def test_hints_change_prediction(engine):
    f = frame_pattern(0, 64, 64)
    hint = torch.zeros(1, 2, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    hint[:, 0, 20:40, 20:40] = 60.0
    mask[:, :, 20:40, 20:40] = 1.0
    a = engine.predict([f]).ab
    b = engine.predict([f], hint, mask).ab
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("config, fed", [({"arch": "vidcolor"}, True), ({"arch": "effdec"}, False),
                                         ({"arch": "effdec", "pins_in_net": True}, True)])
def test_pins_reach_the_net_only_where_it_uses_them(config, fed):
    """effdec colours a pinned frame automatically (the guide then spreads the pins: Colorizer.pins_in_net);
    the vidcolor net, and a config that asks for it, takes them as input."""
    from vidcolor.model import build_model, default_config

    torch.manual_seed(0)
    model = build_model({**default_config(config["arch"]), **config}).eval()
    assert model.pins_in_net is fed
    eng = Engine(model, "cpu", render_size=64)
    f = frame_pattern(0, 64, 64)
    hint, mask = torch.zeros(1, 2, 64, 64), torch.zeros(1, 1, 64, 64)
    hint[:, 0, 20:40, 20:40], mask[:, :, 20:40, 20:40] = 60.0, 1.0
    a, b = eng.predict([f]).ab, eng.predict([f], hint, mask).ab
    assert bool((a - b).abs().max() > 1e-4) == fed


def test_device_choice():
    assert select_device("cpu").type == "cpu"
    with pytest.raises(VidcolorError, match="choose one of"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(VidcolorError, match="CUDA is not available"):
            select_device("cuda")


@pytest.mark.requires_cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(random_weights):
    frames = [frame_pattern(i, 96, 64) for i in range(4)]
    cpu = Engine(load_model(random_weights), "cpu", render_size=64)
    gpu = Engine(load_model(random_weights), "cuda", render_size=64)
    a = cpu.predict(frames).ab
    b = gpu.predict(frames).ab.cpu()
    assert (a - b).abs().mean() < 2.0  # fp16 autocast: close, not equal
    oc = compose_batch(cpu, frames, a)
    og = compose_batch(gpu, frames, b)
    assert all(np.abs(x.astype(int) - y.astype(int)).mean() < 2 for x, y in zip(oc, og))


@pytest.mark.parametrize("depth", [8, 16])
def test_compose_from_predicted_l_equals_compose_from_frames(engine, depth):
    """The pipeline composes from the L that predict() kept; it must equal converting the frames again."""
    frames = [frame_pattern(i, 70, 40, grey=False) for i in range(3)]
    if depth == 16:
        frames = [f.astype(np.uint16) * 257 + 100 for f in frames]
    pred = engine.predict(frames)
    a = engine.compose_l(pred.L_full, pred.ab, frames[0].dtype)
    b = compose_batch(engine, frames, pred.ab)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype == frames[0].dtype and np.array_equal(x, y)


def test_hinted_frames_take_the_guided_temperature(random_weights):
    """A frame given hints is read out at the guided temperature, a frame without at the automatic one,
    also when both are in one batch."""
    frames = [frame_pattern(i, 80, 60) for i in range(2)]
    hint = torch.zeros(2, 2, 64, 88)
    mask = torch.zeros(2, 1, 64, 88)
    hint[0, :, 30:33, 40:43] = torch.tensor([40.0, -20.0])[:, None, None]
    mask[0, :, 30:33, 40:43] = 1
    model = load_model(random_weights)
    same = Engine(model, "cpu", render_size=64, temperature=0.38, guided_temperature=0.38).predict(frames, hint, mask)
    warm = Engine(model, "cpu", render_size=64, temperature=0.38, guided_temperature=2.0).predict(frames, hint, mask)
    assert torch.allclose(same.ab[1], warm.ab[1], atol=1e-5)  # no hints: automatic readout either way
    assert (same.ab[0] - warm.ab[0]).abs().max().item() > 1e-2


def test_a_file_with_its_temperature_folded_in_reads_hinted_frames_at_it(random_weights, tmp_path):
    """On a weights file exported with a readout temperature folded in, the product's guided readout
    (0.7, or 0.7 / saturation) is the file's own temperature, as eval_dev.py reads it; on a plain
    file it stays 0.7. The same net gives the same hinted colour both ways."""
    from vidcolor.settings import DEFAULT_GUIDED_TEMPERATURE, DEFAULT_TEMPERATURE
    from vidcolor.train import export_weights

    st = torch.load(random_weights, map_location="cpu", weights_only=True)
    ckpt, folded = tmp_path / "ckpt.pt", tmp_path / "folded.pt"
    torch.save({"config": st["config"], "ema": st["model"], "step": 0, "wall_seconds": 0.0, "train_config": {},
                "history": []}, ckpt)
    export_weights(ckpt, folded, temperature=0.9)
    frames = [frame_pattern(0, 80, 60)]
    hint = torch.zeros(1, 2, 64, 88)
    mask = torch.zeros(1, 1, 64, 88)
    hint[0, :, 30:33, 40:43] = torch.tensor([40.0, -20.0])[:, None, None]
    mask[0, :, 30:33, 40:43] = 1
    for sat in (1.0, 2.0):
        product = Engine(load_model(folded), "cpu", render_size=64, temperature=DEFAULT_TEMPERATURE / sat,
                         guided_temperature=DEFAULT_GUIDED_TEMPERATURE / sat)
        plain = Engine(load_model(random_weights), "cpu", render_size=64, temperature=0.9 / sat,
                       guided_temperature=0.9 / sat)  # the file's own T, on the unscaled logits
        assert torch.allclose(product.predict(frames, hint, mask).ab, plain.predict(frames, hint, mask).ab, atol=1e-3)
    eng = Engine(load_model(random_weights), "cpu", render_size=64)
    assert eng.readout_temperature(mask).flatten().tolist() == [pytest.approx(DEFAULT_GUIDED_TEMPERATURE)]


def test_grey_frames_hold_a_plane_and_compose_in_bounded_groups(engine, monkeypatch):
    # Scans come as grey RGB; the keyframe carrier holds ~120 frames, and releases 40 at a time. Each
    # held grey frame keeps one uint16 plane, not a float L, and composition takes a few frames at a
    # time (2K scans went to 21 GB composing 48 at once), with the same bits as composing each alone.
    from vidcolor import stream

    monkeypatch.setattr(stream, "COMPOSE_PIXELS", 3 * 64 * 48)  # three of these frames per group
    grey = [np.repeat((frame_pattern(i, 64, 48).astype(np.uint16) * 257)[..., :1], 3, axis=-1) for i in range(7)]
    colour = frame_pattern(7, 64, 48, grey=False).astype(np.uint16) * 257
    items = stream._predict_batch(engine, [(i, f, None) for i, f in enumerate(grey + [colour])], None)
    assert all(it.payload.L_full is None and it.payload.grey.shape == (48, 64) for it in items[:7])
    assert items[7].payload.grey is None and items[7].payload.L_full is not None
    sizes: list[int] = []
    real = engine.compose_l
    monkeypatch.setattr(engine, "compose_l", lambda L, ab, dtype: sizes.append(len(L)) or real(L, ab, dtype))
    together = [rgb for _, rgb in stream._compose(engine, items, 0)]
    assert sizes == [3, 3, 1, 1]  # bounded, and the colour frame in a group of its own
    alone = [rgb for it in items for _, rgb in stream._compose(engine, [it], 0)]
    assert all(np.array_equal(a, b) for a, b in zip(together, alone))
    # the grey frames' L at composition is the L they were predicted from
    L = engine.full_l(grey)
    assert torch.equal(L, engine.grey_l([g[..., 0] for g in grey]))
    for out, g in zip(together[:7], grey):
        assert out.dtype == np.uint16 and out.shape == g.shape

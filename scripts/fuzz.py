"""Fuzz `vidcolor video` by hand (not in CI): damage a small clip at random and run the command on it.

Each case flips, zeroes or cuts bytes of a tiny clip (mp4 with moov at the
end, mp4 with moov first, or mkv, with AAC audio; and, when the ``ffmpeg``
command is installed, every file of the real-input matrix in
tests/realinput.py: Matroska with a 1/1000 time base, MPEG-TS, mov, webm, AVI,
MJPEG, 10-bit, interlaced MPEG-2, VFR, several audio tracks, subtitles...),
runs the CLI on it with a random-weights network (into the output container
the matrix uses for that file), and records a finding when the run

* prints a traceback or logs one (an unexpected error), or hangs (over
  --timeout), or dies on a signal (crash);
* exits with a code outside the documented set (0, 1, 2, 4);
* fails without exactly one ``vidcolor: error: ...`` line, or succeeds with an
  output that does not decode or is missing;
* leaves a file under the final OUTPUT name after failing, or changes the input.

Every case runs in its own process. By default that process is forked from
this one after vidcolor and torch are imported (start-up would otherwise be
most of the time); ``--spawn`` runs ``python -m vidcolor.cli`` instead.
Findings (input, stderr, summary) go to --out, a JSON summary at the end.

    .venv/bin/python scripts/fuzz.py --minutes 5 --out /tmp/vidcolor-fuzz
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the repository root: the fuzzer reuses the test matrix, tests.realinput

from tests import realinput  # noqa: E402
from vidcolor.testclips import write_rgb_video  # noqa: E402
from vidcolor.videoio import ONE_PER_PACKET  # noqa: E402

DOCUMENTED = {0, 1, 2, 4}  # 3 (job mismatch) and 130 (interrupted) cannot happen here
OPTS = ["--render-size", "32", "--batch-size", "4", "-q", "--overwrite", "--restart"]


def make_clip(path: Path, n: int = 12, w: int = 64, h: int = 48, fps: int = 24, options: dict | None = None) -> None:
    """A tiny moving grey clip with sine-wave AAC audio."""
    y, x = np.mgrid[0:h, 0:w]

    def frames():
        for i in range(n):
            v = np.clip(128 + 60 * np.sin((x + 3 * i) / 5.0) + 40 * np.cos((y - 2 * i) / 7.0), 0, 255)
            yield np.stack([v.astype(np.uint8)] * 3, axis=-1)

    write_rgb_video(path, frames(), fps, tone=True, container_options=options)


def random_weights(path: Path) -> None:
    import torch

    from vidcolor.model import build_model, default_config

    torch.manual_seed(0)
    model = build_model(default_config("vidcolor")).eval()
    torch.save({"config": model.config, "model": model.state_dict()}, path)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Damage ``data`` one of several ways; return it and a description."""
    b = bytearray(data)
    kind = rng.choice(["flip", "flip", "flip", "head", "tail", "zero", "cut", "cut", "chop", "dup"])
    if kind in ("flip", "head", "tail"):
        k = rng.choice([1, 1, 2, 4, 8, 16, 64])
        span = {"flip": (0, len(b)), "head": (0, min(len(b), 2048)), "tail": (max(0, len(b) - 2048), len(b))}[kind]
        where = [rng.randrange(*span) for _ in range(k)]
        for i in where:
            b[i] ^= rng.randrange(1, 256)
        return bytes(b), f"{kind} {k} bytes at {sorted(where)[:8]}"
    if kind == "zero":
        i = rng.randrange(len(b))
        n = rng.choice([4, 16, 64, 256, 1024])
        b[i:i + n] = bytes(len(b[i:i + n]))
        return bytes(b), f"zero {n} bytes at {i}"
    if kind == "cut":  # the tail lost, as after an interrupted copy
        i = rng.randrange(1, len(b))
        return bytes(b[:i]), f"cut at {i} of {len(b)}"
    if kind == "chop":  # the head lost
        i = rng.randrange(1, len(b))
        return bytes(b[i:]), f"head cut at {i} of {len(b)}"
    i, j = sorted(rng.randrange(len(b)) for _ in range(2))
    k = rng.randrange(len(b))
    return bytes(b[:k] + b[i:j] + b[k:]), f"duplicate {i}:{j} at {k}"


def run_forked(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    """Run the CLI in a forked child (vidcolor already imported); (exit code or None if hung, stderr)."""
    err = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the child: behave exactly like `python -m vidcolor.cli ARGV`
        code = 1
        try:
            os.chdir(cwd)
            os.dup2(err.fileno(), 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            from vidcolor.cli import main

            main(argv, prog_name="vidcolor")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - what the interpreter would do: print it, exit 1
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    deadline = time.time() + timeout
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            break
        else:
            time.sleep(0.02)
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    return (os.waitstatus_to_exitcode(status) if status is not None else None), text


def run_spawned(argv: list[str], cwd: Path, timeout: float) -> tuple[int | None, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    try:
        r = subprocess.run([sys.executable, "-m", "vidcolor.cli", *argv], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    return r.returncode, r.stderr


def packets_read(path: Path) -> int | None:
    """Video packets a demuxer reads from ``path`` before any error (the frame slots), or None if unknown."""
    n = 0
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            for p in c.demux(video=0):
                n += bool(p.size and not p.is_discard)
    except (av.error.FFmpegError, IndexError):
        pass
    return n


def check_output(out: Path, case: Path) -> str | None:
    """None if ``out`` decodes to one frame per video packet of the input, else what is wrong."""
    if not out.exists():
        return "exit 0 but no output file"
    try:
        with av.open(str(out)) as c:
            n = sum(1 for _ in c.decode(video=0))
    except (av.error.FFmpegError, IndexError) as e:
        return f"output does not decode: {e}"
    want = packets_read(case)
    if not n:
        return "output has no frames"
    with av.open(str(case), metadata_errors="ignore") as c:
        whole = bool(ONE_PER_PACKET & set(c.format.name.split(",")))
    # MPEG-TS/PS may carry a frame's fields in two packets: there the rule is only "no more frames than packets"
    if want and (n != want if whole else n > want):
        return f"output has {n} frames, the input {want} video packets"
    return None


def classify(code: int | None, stderr: str, out_exists: bool, out_problem: str | None,
             input_changed: bool, refused: bool = False) -> str | None:
    """The finding for one run, or None if it behaved as documented.

    ``refused``: the undamaged seed already exits 1 because the output container cannot carry one
    of its streams (the matrix's ``exits=(1,)`` entries), so exit 1 is right for its damaged copies too.
    """
    if code is None:
        return "hang"
    if code < 0:
        return f"crash (signal {-code})"
    if "Traceback" in stderr or "traceback is in" in stderr:
        return "traceback"
    if code not in DOCUMENTED:
        return f"undocumented exit code {code}"
    if input_changed:
        return "input modified"
    if code == 1 and not refused:
        return "exit 1 (options or environment) for what is an input problem (2 or 4)"
    if code != 0:
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("vidcolor: error: "):
            return "error is not one 'vidcolor: error:' line"
        if out_exists:
            return "failed run left a file under the output name"
        return None
    if any(not ln.startswith("vidcolor: warning: ") for ln in stderr.splitlines() if ln.strip()):
        return "unexpected output on stderr"
    return out_problem


def message_kind(stderr: str) -> str:
    """The error or warning line with numbers and paths blanked, for grouping."""
    lines = [ln for ln in stderr.splitlines() if ln.startswith("vidcolor: ")]
    if not lines:
        return "(nothing)"
    text = re.sub(r"/\S+", "PATH", lines[-1] if "error" in lines[-1] else lines[0])
    return re.sub(r"\d+(\.\d+)?", "N", text)[:140]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds before a run counts as a hang")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "vidcolor-fuzz")
    ap.add_argument("--spawn", action="store_true", help="run `python -m vidcolor.cli` per case instead of forking")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help="fuzz only the seed files whose names contain one of these (e.g. ts mkv)")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vidcolor-fuzz-"))
    found_dir = args.out / "findings"
    found_dir.mkdir(parents=True, exist_ok=True)
    builtin = {"moov-last.mp4": {}, "moov-first.mp4": {"movflags": "faststart"}, "clip.mkv": {}}
    for name, opts in builtin.items():
        make_clip(work / name, options=opts)
    seeds = {name: ".mp4" for name in builtin}  # seed file -> output extension
    refused: set[str] = set()  # seeds whose output container cannot carry them: exit 1 is the answer
    if realinput.FFMPEG:
        for src in realinput.MATRIX:  # the matrix's own damage too: fuzzing starts from it as well
            name = realinput.make(src, work).name
            seeds[name] = src.out
            if 1 in src.exits:
                refused.add(name)
    else:
        print("ffmpeg not found: fuzzing the three built-in clips only", flush=True)
    if args.only:
        seeds = {k: v for k, v in seeds.items() if any(o in k for o in args.only)}
        if not seeds:
            ap.error(f"--only {args.only} matches no seed file")
    weights = work / "random.pt"
    random_weights(weights)
    if not args.spawn:
        import torch

        import vidcolor.cli  # noqa: F401 - imported once here, inherited by every forked run
        import vidcolor.pipeline  # noqa: F401 - the CLI imports it on use: here, so all runs see the same code
        torch.set_num_threads(1)
    runner = run_spawned if args.spawn else run_forked

    stats: collections.Counter = collections.Counter()
    kinds: collections.Counter = collections.Counter()
    findings = []
    t_end = time.time() + args.minutes * 60
    i = 0
    while time.time() < t_end:
        seed_name = rng.choice(list(seeds))
        data, how = mutate((work / seed_name).read_bytes(), rng)
        case = work / f"case{Path(seed_name).suffix}"
        case.write_bytes(data)
        before = hashlib.sha256(data).hexdigest()
        out = work / f"out{seeds[seed_name]}"
        out.unlink(missing_ok=True)
        t0 = time.time()
        code, stderr = runner(["video", str(case), str(out), "--weights", str(weights), *OPTS], work, args.timeout)
        took = time.time() - t0
        changed = hashlib.sha256(case.read_bytes()).hexdigest() != before
        problem = check_output(out, case) if code == 0 else None
        finding = classify(code, stderr, out.exists(), problem, changed, seed_name in refused)
        stats[f"exit {code}"] += 1
        stats["tracebacks"] += finding == "traceback"
        stats["hangs"] += code is None
        stats["inputs untouched"] += not changed
        kinds[f"{code}: {message_kind(stderr)}"] += 1
        if finding:
            keep = found_dir / f"{i:05d}{case.suffix}"
            shutil.copy(case, keep)
            keep.with_suffix(".stderr.txt").write_text(stderr)
            findings.append({"case": str(keep), "seed": seed_name, "mutation": how, "exit": code,
                             "finding": finding, "seconds": round(took, 1), "stderr_tail": stderr[-600:]})
            print(f"[{i}] FINDING {finding}: {seed_name} {how} (exit {code})", flush=True)
        i += 1
        if i % 25 == 0:
            print(f"{i} cases, {len(findings)} findings, {dict(stats)}", flush=True)
    summary = {"cases": i, "minutes": args.minutes, "seed": args.seed, "exit_codes": dict(stats),
               "messages": dict(kinds.most_common()), "findings": findings}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "findings"}, indent=1))
    print(f"{len(findings)} findings; details in {args.out / 'summary.json'}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

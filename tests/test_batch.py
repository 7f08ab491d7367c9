"""Batch jobs: ``cafetalk-rt animate`` with several files or folders (cafetalk_rt.cli.batch)."""
import numpy as np
import pytest
import soundfile as sf

from cafetalk_rt.cli.batch import collect_inputs, plan_outputs, run_batch, summary
from cafetalk_rt.cli.main import main
from cafetalk_rt.errors import InputError
from cafetalk_rt.writers import load_animation


@pytest.fixture(scope="module")
def folder(tmp_path_factory, demo_audio):
    """in/a.wav (1.5 s), in/sub/b.flac (1.0 s), in/broken.wav (not audio), in/notes.txt."""
    root = tmp_path_factory.mktemp("in")
    (root / "sub").mkdir()
    sf.write(root / "a.wav", demo_audio[:24000], 16000)
    sf.write(root / "sub" / "b.flac", demo_audio[8000:24000], 16000)
    (root / "broken.wav").write_bytes(b"not audio at all")
    (root / "notes.txt").write_text("ignored: not an audio extension")
    return root


def test_collect_inputs_expands_folders_and_keeps_explicit_files(folder):
    assert [p.name for p in collect_inputs([folder])] == ["a.wav", "broken.wav"]
    assert [p.name for p in collect_inputs([folder], recursive=True)] == ["a.wav", "broken.wav", "b.flac"]
    assert [p.name for p in collect_inputs([folder / "notes.txt", folder / "a.wav"])] == ["notes.txt", "a.wav"]
    with pytest.raises(InputError, match="does not exist"):
        collect_inputs([folder / "missing.wav"])
    assert [p.name for p in collect_inputs([folder / "sub"])] == ["b.flac"]
    empty = folder.parent / "empty_dir"
    empty.mkdir(exist_ok=True)
    with pytest.raises(InputError, match="--recursive"):
        collect_inputs([empty])


def test_plan_outputs_mirrors_subfolders_and_refuses_clashes_and_existing_files(folder, tmp_path):
    inputs = collect_inputs([folder], recursive=True)
    jobs, kept = plan_outputs(inputs, tmp_path / "out", ".csv", roots=[folder])
    assert [j.output.relative_to(tmp_path / "out").as_posix() for j in jobs] == ["a.csv", "broken.csv", "sub/b.csv"]
    assert kept == []
    with pytest.raises(InputError, match="would both be written"):
        plan_outputs([folder / "a.wav", folder / "a.wav"], tmp_path / "out", ".npz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.csv").write_text("mine")
    with pytest.raises(InputError, match="--skip-existing"):
        plan_outputs(inputs, tmp_path / "out", ".csv", roots=[folder])
    jobs, kept = plan_outputs(inputs, tmp_path / "out", ".csv", roots=[folder], skip_existing=True)
    assert [j.input.name for j in kept] == ["a.wav"] and "a.wav" not in [j.input.name for j in jobs]
    with pytest.raises(InputError, match="must be a folder"):
        plan_outputs(inputs, tmp_path / "out" / "a.csv", ".csv")


def test_run_batch_reports_and_skips_failures_but_not_bugs(folder, tmp_path):
    jobs, _ = plan_outputs(collect_inputs([folder]), tmp_path, ".npz", roots=[folder])

    def one(job):
        if job.input.name == "broken.wav":
            raise InputError("unreadable")
        return 1.5

    results = run_batch(jobs, one, progress=False)
    assert [r.error is None for r in results] == [True, False] and "unreadable" in results[1].error
    assert "1 written, 1 failed" in summary(results, [])
    with pytest.raises(ZeroDivisionError):
        run_batch(jobs, lambda job: 1 / 0, progress=False)


def test_cli_batch_writes_every_good_file_equal_to_single_runs(folder, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--num-inference-steps", "2", "--seed", "5"]
    assert main(["animate", str(folder), "-o", str(out), "--recursive", "--format", "json", *args]) == 1
    report = capsys.readouterr().out
    assert "2 written, 1 failed" in report and "broken.wav" in report
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == ["a.json", "sub/b.json"]
    single = tmp_path / "b_single.json"
    assert main(["animate", str(folder / "sub" / "b.flac"), "-o", str(single), *args]) == 0
    (batch_b, fps), (one_b, _) = load_animation(out / "sub" / "b.json"), load_animation(single)
    assert fps == 25 and batch_b.shape == (25, 52)
    np.testing.assert_allclose(batch_b, one_b, atol=1e-6)  # json stores rounded floats
    before = (out / "a.json").read_bytes()
    assert main(["animate", str(folder), "-o", str(out), "--format", "json", *args]) == 2  # exists → refused
    assert "--skip-existing" in capsys.readouterr().err and (out / "a.json").read_bytes() == before


def test_cli_batch_refuses_single_file_only_options(folder, tmp_path, capsys):
    assert main(["animate", str(folder / "a.wav"), str(folder / "sub" / "b.flac"), "-o", str(tmp_path / "o"),
                 "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot and --preview take one input" in capsys.readouterr().err

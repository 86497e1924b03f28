"""The batch engine: one case per task, failures and killed workers stay with their case,
``--resume`` skips finished cases, the model is read once per process."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest

from allnet import pipeline
from allnet.cases import Case, InlineExecutor, run_cases
from allnet.errors import InputError

# Workers of a local Dask cluster are other processes: send this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_summary(out: Path, count: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps({"totals": {"count": count}, "timings_s": {"total": 1.5}}))


def fake_case(inputs: dict, out: Path) -> None:
    """A case run: behaves as ``inputs["do"]`` says."""
    action = inputs["do"]
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-case
    if action == "bad":
        raise InputError("/data/T1.nii.gz", "image is constant")
    if action == "crash":
        raise ZeroDivisionError("bug")
    if action == "oom":
        raise MemoryError()
    if action == "ok":
        _write_summary(out, 3)


def _cases(tmp_path: Path, actions: list[str]) -> list[Case]:
    return [Case(f"c{i}-{a}", {"do": a}, tmp_path / f"c{i}", tmp_path / f"c{i}" / "summary.json")
            for i, a in enumerate(actions)]


def test_failures_stay_with_their_case_and_outcomes_keep_the_case_order(tmp_path: Path) -> None:
    cases = _cases(tmp_path, ["bad", "ok", "crash", "silent", "ok", "oom"])
    cases.insert(5, Case("c5-problem", {}, tmp_path / "c5", tmp_path / "c5" / "summary.json",
                         problem="no FLAIR image found"))
    seen = []
    outcomes = run_cases(cases, fake_case, executor=InlineExecutor(),
                         on_done=lambda done, total, o: seen.append((done, total, o.case_id)))
    assert [o.status for o in outcomes] == ["failed", "ok", "failed", "failed", "ok", "failed", "failed"]
    assert (outcomes[0].exit_code, outcomes[0].error) == (2, "/data/T1.nii.gz: image is constant")
    assert outcomes[2].exit_code == 1 and "ZeroDivisionError" in outcomes[2].error
    assert "without writing summary.json" in outcomes[3].error  # finished means: summary written
    assert outcomes[1].totals == {"count": 3} and outcomes[1].peak_rss_mib > 0
    assert outcomes[5].error == "no FLAIR image found"
    assert outcomes[6].exit_code == 5 and outcomes[6].error.startswith("out of memory")
    assert sorted(s[0] for s in seen) == list(range(1, 8)) and {s[1] for s in seen} == {7}


def test_resume_skips_cases_whose_summary_exists(tmp_path: Path) -> None:
    cases = _cases(tmp_path, ["ok", "ok"])
    _write_summary(cases[0].output_dir, 7)
    (cases[1].output_dir).mkdir()
    (cases[1].done_marker).write_text("{truncated")  # unreadable: run again
    ran = []

    def counting(inputs, out):
        ran.append(out)
        fake_case(inputs, out)

    outcomes = run_cases(cases, counting, resume=True)
    assert [o.status for o in outcomes] == ["resumed", "ok"]
    assert ran == [cases[1].output_dir]
    assert outcomes[0].totals == {"count": 7} and outcomes[0].seconds == 1.5
    assert [o.status for o in run_cases(cases, counting)] == ["ok", "ok"]  # without resume: all run


def test_models_are_read_once_per_process_and_again_when_the_file_changes(model_file: Path,
                                                                          monkeypatch) -> None:
    reads = []
    real = pipeline.load_model_file
    monkeypatch.setattr(pipeline, "load_model_file", lambda p: reads.append(p) or real(p))
    pipeline._load_models_cached.cache_clear()
    first, _ = pipeline.load_models([str(model_file)])
    again, _ = pipeline.load_models([str(model_file)])
    assert again is first and len(reads) == 1
    os.utime(model_file, ns=(1, 1))
    assert pipeline.load_models([str(model_file)])[0] is not first and len(reads) == 2


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_case_on_a_local_dask_cluster(tmp_path: Path) -> None:
    from allnet.cluster import case_executor

    cases = _cases(tmp_path, ["ok", "kill", "ok", "bad"])
    with case_executor(workers=2, warm=False) as executor:
        outcomes = run_cases(cases, fake_case, executor=executor)
    assert [o.status for o in outcomes] == ["ok", "failed", "ok", "failed"]
    assert "worker running this case stopped" in outcomes[1].error and outcomes[1].exit_code == 5
    assert outcomes[3].error == "/data/T1.nii.gz: image is constant"
    assert outcomes[0].peak_rss_mib < 4096


def test_an_unreachable_scheduler_is_a_bad_input_naming_the_address(tmp_path: Path, monkeypatch) -> None:
    from allnet import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(InputError, match="--scheduler tcp://127.0.0.1:9: cannot connect"):
        with cluster.case_executor(scheduler="tcp://127.0.0.1:9") as executor:
            run_cases(_cases(tmp_path, ["ok"]), fake_case, executor=executor)

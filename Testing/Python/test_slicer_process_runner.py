"""ProcessRunner with real child processes: progress parsing, result, error line, crash tail,
and cancel killing the whole process tree (checked with psutil)."""
from __future__ import annotations

import sys
import textwrap
import time

import psutil
import pytest

from helpers_slicer import resetSlicer, runEventLoopUntil

from ALLNetSegmentLib.ProcessRunner import ProcessRunner, crashMessage, parseLine  # noqa: E402


def child(code: str) -> list[str]:
    return [sys.executable, "-u", "-c", textwrap.dedent(code)]


@pytest.fixture()
def runner():
    resetSlicer()
    runner = ProcessRunner()
    runner.events = {"progress": [], "log": [], "finished": []}
    runner.progress.connect(lambda *a: runner.events["progress"].append(a))
    runner.log.connect(lambda line: runner.events["log"].append(line))
    runner.finished.connect(lambda outcome: runner.events["finished"].append(outcome))
    yield runner
    if runner.isRunning():
        runner.cancel()


def test_protocol_lines_are_parsed_with_the_core_parser():
    assert parseLine('ALLNET-PROGRESS {"stage": "registration", "fraction": 0.35, "message": "FLAIR -> MNI"}') == (
        "progress", {"stage": "registration", "fraction": 0.35, "message": "FLAIR -> MNI"})
    assert parseLine('ALLNET-ERROR {"message": "FLAIR.nii.gz: image is constant", "exit_code": 2}')[0] == "error"
    assert parseLine("Loading model...") is None
    assert parseLine("ALLNET-PROGRESS {broken json") is None


def test_progress_and_result_of_a_successful_run(runner, tmp_path):
    runner.start(child(f"""
        import json, sys
        print("warming up")
        for stage, fraction in (("preprocessing", 0.1), ("inference", 0.6), ("outputs", 0.95)):
            print("ALLNET-PROGRESS " + json.dumps({{"stage": stage, "fraction": fraction, "message": stage + "..."}}))
        print("ALLNET-RESULT " + json.dumps({{"output_dir": {str(tmp_path)!r}, "summary": "s.json"}}))
    """))
    runEventLoopUntil(lambda: runner.events["finished"])
    outcome = runner.events["finished"][0]
    assert outcome.ok and outcome.returnCode == 0
    assert outcome.outputDir == str(tmp_path) and outcome.summaryPath == "s.json"
    assert [p[:2] for p in runner.events["progress"]] == [("preprocessing", 0.1), ("inference", 0.6), ("outputs", 0.95)]
    assert "warming up" in runner.events["log"]
    assert not runner.isRunning()


def test_error_line_becomes_the_message(runner):
    runner.start(child("""
        import json, sys
        print("ALLNET-ERROR " + json.dumps({"message": "FLAIR.nii.gz: image is constant", "exit_code": 2}))
        sys.exit(2)
    """))
    runEventLoopUntil(lambda: runner.events["finished"])
    outcome = runner.events["finished"][0]
    assert not outcome.ok and not outcome.cancelled
    assert outcome.returnCode == 2
    assert outcome.errorMessage == "FLAIR.nii.gz: image is constant"


def test_crash_without_error_line_reports_exit_code_and_output_tail(runner):
    runner.start(child("""
        import sys
        print("step 1 done")
        raise SystemExit("Segmentation fault in libfoo: boom")
    """))
    runEventLoopUntil(lambda: runner.events["finished"])
    outcome = runner.events["finished"][0]
    assert outcome.returnCode == 1 and not outcome.ok
    assert "exit code 1" in outcome.errorMessage
    assert "boom" in outcome.errorMessage and "step 1 done" in outcome.errorMessage


def test_success_exit_without_result_line_is_an_error(runner):
    runner.start(child("print('nothing to report')"))
    runEventLoopUntil(lambda: runner.events["finished"])
    assert "without reporting a result" in runner.events["finished"][0].errorMessage


def test_cancel_kills_the_whole_process_tree(runner):
    # A launcher that starts a worker, like PythonSlicer starting the real Python.
    runner.start(child("""
        import subprocess, sys, time
        worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("WORKER", worker.pid, flush=True)
        print('ALLNET-PROGRESS {"stage": "inference", "fraction": 0.5, "message": "running"}', flush=True)
        time.sleep(120)
    """))
    runEventLoopUntil(lambda: any(line.startswith("WORKER") for line in runner.events["log"]))
    workerPid = int(next(line for line in runner.events["log"] if line.startswith("WORKER")).split()[1])
    launcherPid = runner.pid
    assert psutil.pid_exists(workerPid)
    started = time.monotonic()
    runner.cancel()
    runEventLoopUntil(lambda: runner.events["finished"], timeout=15)
    assert time.monotonic() - started < 10
    outcome = runner.events["finished"][0]
    assert outcome.cancelled and not outcome.ok and outcome.errorMessage is None
    for pid in (workerPid, launcherPid):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_blocking_run_for_scripts(runner, tmp_path):
    outcome = runner.runBlocking(child(f"""
        import json
        print('ALLNET-PROGRESS {{"stage": "done", "fraction": 1.0, "message": "ok"}}')
        print("ALLNET-RESULT " + json.dumps({{"output_dir": {str(tmp_path)!r}, "summary": "x"}}))
    """))
    assert outcome.ok and outcome.outputDir == str(tmp_path)
    assert runner.events["progress"] == [("done", 1.0, "ok")]
    assert runner.events["finished"] == [outcome]


def test_crash_message_names_a_kill_by_signal():
    assert "signal 9" in crashMessage(-9, []) and "memory" in crashMessage(-9, [])
    assert "(model problem" in crashMessage(4, ["x"])

"""The trials: each one trains in its own process (`python -m gru4rec.cli`, the original's
run.py, or --run-script), whose lines are echoed. The first `PRIMARY METRIC: <value>` line is
the trial's value; a child that crashes, exits non-zero, prints no metric or a NaN, or runs
past --trial-timeout fails the trial, with the reason in its `fail_reason` user attribute."""
import math
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import gru4rec

from .space import param_string

METRIC_LINE = re.compile(r"^PRIMARY METRIC:\s*(\S+)")
EPOCH_LINE = re.compile(r"^Best epoch by validation \S+: (\d+) ")
VALID_LINE = re.compile(r"^Validation \S+ after epoch (\d+): (\S+) ")
RUN_MODULE = "gru4rec.cli"


class TrialFailed(Exception):
    """A trial that gave no value; Optuna records it as FAIL and the study goes on."""


def trial_environment():
    """os.environ with unbuffered output (a trial's lines arrive while it trains) and, when a
    fresh interpreter here would not find the gru4rec this process runs (a checkout that is
    not installed), that gru4rec's folder first on PYTHONPATH: the trials run the same code."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    root = Path(gru4rec.__file__).resolve().parents[1]
    if root not in {Path(p or ".").resolve() for p in sys.path[1:]}:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(root), env.get("PYTHONPATH"))))
    return env


def judge(status, metric, last, timed_out, timeout):
    """(value, None) for a run that exited with 0 and printed a finite PRIMARY METRIC first,
    else (None, why the trial failed)."""
    if timed_out:
        return None, f"killed after the --trial-timeout of {timeout:g}s"
    if status < 0:
        return None, f"run.py was killed by signal {-status}" + (f" (last line: {last})" if last else "")
    if status != 0:
        return None, f"run.py exited with status {status}" + (f": {last}" if last else "")
    if metric is None:
        return None, "run.py printed no PRIMARY METRIC line"
    try:
        value = float(metric)
    except ValueError:
        return None, f"unreadable PRIMARY METRIC: {metric!r}"
    if not math.isfinite(value):
        return None, f"PRIMARY METRIC is {metric}"
    return value, None


class Runner:
    """Runs the training processes, echoes their lines and keeps track of them so they can be stopped."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.children = set()
        self.prefix = args.n_jobs > 1
        self.env = trial_environment()

    def launcher(self):
        a = self.args
        return [a.python, a.run_script] if a.run_script else [a.python, "-m", RUN_MODULE]

    def base_command(self):
        a = self.args
        return self.launcher() + [a.path] + self.selection_options() \
            + ["-g", a.gru4rec_model, "-d", a.device, "--backend", a.backend] + self.sequence_options()

    def selection_options(self):
        """-t TEST_PATH, or with --valid-every, --valid TEST_PATH: each run chooses its epoch
        on the tuning file, and its best epoch's value is the trial's (no second evaluation)."""
        a = self.args
        if a.valid_every is None:
            return ["-t", a.test_path]
        return ["--valid", a.test_path, "--valid-every", str(a.valid_every)]

    def sequence_options(self):
        """--history/--keep-seen as given to paropt: every run evaluates the same way."""
        a = self.args
        if a.history is None:
            return []
        return ["--history", *a.history] + (["--keep-seen"] if a.keep_seen else [])

    def keys(self):
        a = self.args
        return ["-e", a.eval_type, "-ik", a.item_key, "-sk", a.session_key, "-tk", a.time_key]

    def echo(self, line, tag):
        with self.lock:
            print(f"[{tag}] {line}" if tag else line, flush=True)

    def run(self, cmd, tag=None, timeout=None, watch=None):
        """Runs cmd, echoing each output line; returns (status, first metric text or None, last
        line, timed out, chosen epoch or None). watch(line) returning True kills the child."""
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", env=self.env)
        with self.lock:
            self.children.add(proc)
        timer, expired = _kill_after(proc, timeout) if timeout else (None, None)
        try:
            metric, last, epoch = self._follow(proc, tag, watch)
            status = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with self.lock:
                self.children.discard(proc)
        return status, metric, last, bool(expired and expired.is_set()), epoch

    def _follow(self, proc, tag, watch):
        """Echoes the child's lines until it closes its output; (first metric text, last line,
        epoch chosen by validation or None)."""
        metric, last, epoch = None, "", None
        for line in proc.stdout:
            line = line.rstrip()
            self.echo(line, tag)
            text = line.strip()
            if watch is not None and watch(text):
                proc.kill()
            if line:
                last = line
            m = EPOCH_LINE.match(text)
            if m:
                epoch = int(m.group(1))
            if metric is None:
                m = METRIC_LINE.match(text)
                if m:
                    metric = m.group(1)
        return metric, last, epoch

    def stop_all(self):
        with self.lock:
            procs = list(self.children)
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    def objective(self, space):
        """The Optuna objective: draws the space's parameters and trains with them."""
        a = self.args
        worker = f"{socket.gethostname()}:{os.getpid()}"

        def objective(trial):
            import optuna
            ps = param_string(a.fixed_parameters, {p.name: p.suggest(trial) for p in space})
            trial.set_user_attr("worker", worker)
            cmd = self.base_command() + ["-ps", ps, "-m", str(a.measure), "-pm", a.primary_metric, "-lpm"] + self.keys()
            pruned = []
            try:
                *outcome, epoch = self.run(cmd, f"trial {trial.number}" if self.prefix else None, a.trial_timeout,
                                           None if a.valid_every is None else _validation_watch(trial, pruned))
                if pruned:
                    trial.set_user_attr("pruned_after_epoch", pruned[0])
                    raise optuna.TrialPruned(f"pruned after epoch {pruned[0]}")
                value, reason = judge(*outcome, a.trial_timeout)
                if epoch is not None:
                    trial.set_user_attr("best_epoch", epoch)
            except OSError as e:
                value, reason = None, f"could not start {a.run_script or ' '.join(self.launcher())}: {e}"
            except KeyboardInterrupt:
                trial.set_user_attr("fail_reason", "interrupted")
                raise
            if reason is not None:
                trial.set_user_attr("fail_reason", reason)
                raise TrialFailed(reason)
            return value
        return objective


def _validation_watch(trial, pruned):
    """A Runner.run watch: reports each validation line's value to Optuna at its epoch (the
    study keeps every trial's validation curve) and answers True (stop the child) when the
    study's pruner (--prune) prunes the trial; the epoch is then appended to `pruned`."""
    def watch(line):
        m = VALID_LINE.match(line)
        if m is None:
            return False
        epoch, value = int(m.group(1)), float(m.group(2))
        trial.report(value, epoch)
        if trial.should_prune():
            pruned.append(epoch)
            return True
        return False
    return watch


def _kill_after(proc, timeout):
    """A started timer that kills proc after timeout seconds, and the event it sets then."""
    expired = threading.Event()

    def kill():
        expired.set()
        proc.kill()
    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    return timer, expired

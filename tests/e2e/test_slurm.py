"""recipes/slurm/train.slurm under a real Slurm: Debian's slurm-wlm and munge, started here as a one-node
cluster on 127.0.0.1 whose node has two GPUs in Slurm's books (GRES backed by character devices, so Slurm
allocates and binds them as it does real ones; nothing computes on them). The jobs run the CPU stage 1 of
the SmolLM2 recipe through the same script a GPU cluster runs, with only GPUS_PER_NODE, the server command
and the sizes swapped.

Not run here: TRL's weight sync to the server (NCCL, GPUs only), so in the server layout the trainer runs
with `--use_vllm false` beside a real vLLM server step; several nodes (the layout is checked in a dry run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medssr_hub.hub import LocalHub
from tests.support.paths import ROOT
from tests.support.servers import free_port

SCRIPT = ROOT / "recipes" / "slurm" / "train.slurm"
SBIN = ("/usr/sbin", "/usr/bin")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "srun")
GPUS = 2
DESCRIPTION = "six keyed vignettes, labeled by the policy"


def _which(name: str) -> str:
    found = shutil.which(name) or next((f"{d}/{name}" for d in SBIN if Path(f"{d}/{name}").is_file()), None)
    if found is None:
        pytest.fail(f"{name} is not installed: `make install-test` installs Debian's slurm-wlm and munge")
    return found


class Cluster:
    """munged, slurmctld and slurmd in the foreground, their state and logs in one folder."""

    def __init__(self, folder: Path):
        if os.geteuid() != 0:
            pytest.fail("the Slurm test starts slurmctld and slurmd as root (CI does); run the tests as root")
        self.folder = folder
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
        for sub in ("state", "spool"):
            (folder / sub).mkdir()
        key = folder / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        devices = []
        for i in range(GPUS):  # the node's GPUs in Slurm's books: character devices (as /dev/null)
            device = folder / f"gpu{i}"
            os.mknod(device, 0o600 | 0o020000, os.makedev(1, 3))
            devices.append(str(device))
        socket = folder / "munge.sock"
        (folder / "gres.conf").write_text(f"NodeName=localhost Name=gpu File={folder}/gpu[0-{GPUS - 1}]\n")
        (folder / "slurm.conf").write_text(
            "\n".join(
                [
                    "ClusterName=medssr",
                    "SlurmctldHost=localhost",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={socket}",
                    f"StateSaveLocation={folder}/state",
                    f"SlurmdSpoolDir={folder}/spool",
                    f"SlurmctldPidFile={folder}/slurmctld.pid",
                    f"SlurmdPidFile={folder}/slurmd.pid",
                    f"SlurmctldLogFile={folder}/slurmctld.log",
                    f"SlurmdLogFile={folder}/slurmd.log",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/builtin",
                    "ReturnToService=2",
                    "GresTypes=gpu",
                    "JobCompType=jobcomp/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "KillWait=5",
                    f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=2000 "
                    f"Gres=gpu:{GPUS} State=UNKNOWN",
                    "PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                ]
            )
            + "\n"
        )
        log = (folder / "daemons.log").open("w")
        self.procs = [
            subprocess.Popen(
                [
                    _which("munged"),
                    "--foreground",
                    "--force",
                    f"--key-file={key}",
                    f"--socket={socket}",
                    f"--pid-file={folder}/munged.pid",
                    f"--log-file={folder}/munged.log",
                    f"--seed-file={folder}/munged.seed",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            ),  # fmt: skip
        ]
        self._wait(lambda: socket.exists(), "munged")
        self.procs.append(
            subprocess.Popen(
                [_which("slurmctld"), "-D", "-c"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        )
        self.procs.append(
            subprocess.Popen(
                [_which("slurmd"), "-D", "-N", "localhost"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%t").stdout.strip() == "idle", "an idle node")

    def _wait(self, ready, what: str, seconds: float = 60) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.5)
        log = (self.folder / "daemons.log").read_text()[-3000:]
        self.stop()
        pytest.fail(f"the test's Slurm cluster did not come up ({what}):\n{log}")

    def run(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([_which(argv[0]), *argv[1:]], env=kw.pop("env", self.env), capture_output=True,
                              text=True, timeout=60, **kw)  # fmt: skip

    def sbatch(self, *args: str, env: dict[str, str], out: Path) -> str:
        """Submit train.slurm from the checkout (its submit folder) and return the job id."""
        done = self.run(
            "sbatch", "--parsable", "--nodes=1", f"--gres=gpu:{GPUS}", f"--output={out}.out",
            f"--error={out}.err", str(SCRIPT), *args, env={**self.env, **env}, cwd=ROOT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().split(";")[0]

    def wait(self, job: str, seconds: float) -> tuple[str, float]:
        """(the job's final state, seconds it took to leave the queue)."""
        start = time.time()
        while time.time() - start < seconds:
            if not self.run("squeue", "-h", "-j", job).stdout.strip():
                state = self.run("scontrol", "show", "job", job).stdout
                return state.split("JobState=")[1].split()[
                    0
                ] if "JobState=" in state else "GONE", time.time() - start
            time.sleep(1)
        self.run("scancel", job)
        pytest.fail(f"job {job} still queued or running after {seconds:.0f} s")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


def job_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """What the job runs with: this checkout's environment on PATH, CPU-sized, logs in the test's folder."""
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "GPUS_PER_NODE": str(GPUS),
        "LOGS": str(tmp_path / "logs"),
        "POLL": "2",
        "HF_TOKEN": "",
        **extra,
    }


def stage1_overrides(hub: Path, out: Path, repo: str, steps: int = 1) -> list[str]:
    return [
        "--dataset_name", "medssr/synth-labeled", "--dataset_revision", "v1.0.0", "--hub", str(hub),
        "--max_steps", str(steps), "--save_steps", "1", "--output_dir", str(out),
        "--publish_repo", repo, "--publish_version", f"v0.{steps}.0",
        "--per_device_train_batch_size", "2", "--num_generations", "2", "--max_completion_length", "16",
        # An override with spaces reaches the recipe as one value (it lands on the model card).
        "--data_description", DESCRIPTION,
    ]  # fmt: skip


def _logs(out: Path) -> str:
    return "".join(Path(f"{out}.{s}").read_text() for s in ("out", "err") if Path(f"{out}.{s}").exists())


@pytest.mark.slow
def test_a_job_without_vllm_trains_on_every_gpu_saves_and_a_second_job_resumes(slurm, labeled, tmp_path):
    """The shipped recipe (no vLLM) as the script lays it out: one trainer step over the node's GPUs, with
    the default accelerate config (DeepSpeed ZeRO-2, its mixed precision the recipe's), two steps saved
    with DeepSpeed's per-rank optimizer shards; a second job resumes from the last and trains a third."""

    def job(steps: int) -> str:
        out = tmp_path / f"job-{steps}"
        overrides = stage1_overrides(labeled, tmp_path / "run", "medssr/slurm-plain", steps)
        state, _ = slurm.wait(slurm.sbatch("stage1", "smollm2/stage1.yaml", *overrides, env=job_env(tmp_path),
                                           out=out), 600)  # fmt: skip
        log = _logs(out)
        assert state == "COMPLETED", log[-4000:]
        assert "every trainer step finished" in log and log.count("Training on 6 questions") == GPUS, log[
            -3000:
        ]
        return log

    job(2)
    shards = list((tmp_path / "run" / "checkpoint-2" / "global_step2").glob("*optim_states.pt"))
    assert len(shards) == GPUS  # ZeRO-2 partitioned the Adam state, one shard a process
    assert f"Resuming from {tmp_path / 'run' / 'checkpoint-2'}" in job(3)
    assert (
        json.loads((tmp_path / "run" / "checkpoint-3" / "trainer_state.json").read_text())["global_step"] == 3
    )
    card = LocalHub(labeled).pull("medssr/slurm-plain", "v0.3.0", "model") / "README.md"
    assert DESCRIPTION in card.read_text()


def _server_recipe(tmp_path: Path) -> Path:
    """The SmolLM2 stage 1 recipe in server mode: the layout the script reads from `vllm_mode`."""
    recipe = tmp_path / "stage1_server.yaml"
    shipped = (ROOT / "recipes" / "smollm2" / "stage1.yaml").read_text()
    recipe.write_text(shipped + "\nuse_vllm: true\nvllm_mode: server\n")
    return recipe


def _executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.mark.slow
@pytest.mark.vllm
def test_server_mode_on_one_node_runs_a_vllm_server_step_beside_the_trainer_step(
    slurm, labeled, embedded_dir, tmp_path
):
    """One node, server mode: a real vLLM server step on the last GPU and the trainer step on the others,
    sharing the node (`srun --overlap`; without it the trainer step waits for ever), each seeing the GPUs
    the script gives it, not the job's (Slurm sets every step's CUDA_VISIBLE_DEVICES to all of them). The
    trainer runs with `--use_vllm false`: TRL's weight sync to the server needs NCCL."""
    serve = _executable(
        tmp_path / "serve.sh",
        '#!/bin/bash\necho "server sees CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"\n'
        f'exec {sys.executable} -m vllm.entrypoints.openai.api_server "$@" --enforce-eager '
        "--kv-cache-memory-bytes 1073741824 --dtype float32\n",
    )
    out = tmp_path / "job"
    env = job_env(tmp_path, VLLM_SERVE=serve, SERVE_MODEL=str(embedded_dir), VLLM_PORT=str(free_port()),
                  VLLM_CPU_CI_ENV="1", VLLM_WAIT="600")  # fmt: skip
    overrides = [*stage1_overrides(labeled, tmp_path / "run", "medssr/slurm-server"), "--use_vllm", "false"]
    job = slurm.sbatch("stage1", str(_server_recipe(tmp_path)), *overrides, env=env, out=out)
    state, _ = slurm.wait(job, 900)
    log = _logs(out)
    assert state == "COMPLETED", log[-4000:]
    assert "answered /health" in log and "every trainer step finished" in log
    assert log.index("answered /health") < log.index("Training on 6 questions")  # the trainer waited
    assert log.count("Training on 6 questions") == GPUS - 1  # one GPU serves
    server_log = (tmp_path / "logs").glob("*-vllm.log")
    (server_log,) = list(server_log)
    assert f"server sees CUDA_VISIBLE_DEVICES={GPUS - 1}" in server_log.read_text()
    assert (tmp_path / "run" / "checkpoint-1").is_dir()


@pytest.mark.slow
def test_a_server_step_that_dies_ends_the_job_within_one_poll_naming_its_log(slurm, labeled, tmp_path):
    """The server answers /health, the trainer starts, then the server exits: the job ends at the next
    poll, its trainer stopped before finishing, with one line naming the server's log."""
    port = free_port()
    health = (
        "import http.server, threading, time\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        f"s = http.server.HTTPServer(('127.0.0.1', {port}), H)\n"
        "threading.Thread(target=s.serve_forever, daemon=True).start()\n"
        "time.sleep(8); print('engine core died (test)', flush=True); raise SystemExit(3)\n"
    )
    (tmp_path / "health.py").write_text(health)
    serve = _executable(
        tmp_path / "serve.sh", f"#!/bin/bash\nexec {sys.executable} {tmp_path / 'health.py'}\n"
    )
    out = tmp_path / "job"
    env = job_env(tmp_path, VLLM_SERVE=serve, VLLM_PORT=str(port), SERVE_MODEL="unused")
    overrides = [*stage1_overrides(labeled, tmp_path / "run", "medssr/slurm-dies"), "--use_vllm", "false"]
    job = slurm.sbatch("stage1", str(_server_recipe(tmp_path)), *overrides, env=env, out=out)
    state, took = slurm.wait(job, 300)
    log = _logs(out)
    assert state == "FAILED", log[-4000:]
    (line,) = [x for x in log.splitlines() if "the vLLM server step on localhost exited" in x]
    (server_log,) = list((tmp_path / "logs").glob("*-vllm.log"))
    assert "(code 3)" in line and str(server_log) in line
    assert "engine core died (test)" in server_log.read_text()
    assert not (tmp_path / "run" / "checkpoint-1").exists()  # the trainer was stopped, not waited for

"""The dashboard's panels drawn from real metrics of a local run (not a test): docs/img/dashboard.png.

    venv/bin/python bench/dashboard_plot.py run                  # ~2 minutes: train, serve, load, query
    python3 -m venv bench/.venv-plot && bench/.venv-plot/bin/pip install -r bench/requirements-plot.txt
    bench/.venv-plot/bin/python bench/dashboard_plot.py plot     # bench/.work/dashboard.json -> the PNG

``run`` starts a Prometheus (``apt-get install prometheus``; any 2.x) on loopback that scrapes,
every second, the trainer while it trains (its metrics port, as the Job exposes it) and two
servers (plain HTTP, their internal metrics ports), as a cluster's collector would; trains the
digits example once (examples/digits) and publishes it (``python -m mlapp.publish --run``); puts
the servers under load with ``wrk`` (as bench/serve.py does) in phases of rising concurrency and
one of refused logins; then evaluates every query of the dashboard (deploy/grafana/mlstack.json) as
it stands, through Prometheus's HTTP API, over the run, and writes
the answers to bench/.work/dashboard.json. ``plot`` draws the main panels from that file with
matplotlib, in its own venv (bench/requirements-plot.txt) so the app's pins never meet its own.
No Grafana runs here: the panels are drawn by matplotlib from the very same PromQL.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
WORK: Final = REPO / "bench" / ".work"
RESULTS: Final = WORK / "dashboard.json"
PNG: Final = REPO / "docs" / "img" / "dashboard.png"
DASHBOARD: Final = REPO / "deploy" / "grafana" / "mlstack.json"
SCRAPE_SECONDS: Final = 1
# Grafana's $__rate_interval: at least four scrape intervals (grafana.com/docs, "$__rate_interval").
RATE_INTERVAL: Final = "5s"
MODEL, VERSION = "digits", "dashboard"
# Load phases against each of the two servers: (seconds, connections, with credentials).
# The phase without credentials meets the failed-login throttle (429s, app/mlapp/serve/auth.py).
PHASES: Final = ((20, 1, True), (20, 8, True), (20, 32, True), (10, 4, False), (15, 2, True))


def _free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback only
        body: bytes = answer.read()
        return body


def _wait(url: str, what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited {proc.returncode} before it answered {url}")
        try:
            _get(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not answer {url} within {timeout:.0f}s")


def _prometheus(port: int, targets: dict[str, list[str]], data: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("dashboard_plot: no prometheus binary; `apt-get install prometheus` (any 2.x)")
    jobs = [{"job_name": job, "static_configs": [{"targets": addresses}]} for job, addresses in targets.items()]
    config = {"global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
    path = data / "prometheus.yml"
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    log = (data / "prometheus.log").open("wb")
    cmd = [binary, f"--config.file={path}", f"--storage.tsdb.path={data / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    _wait(f"http://127.0.0.1:{port}/-/ready", "prometheus", proc)
    return proc


def _queries() -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every dashboard query, its variables as Grafana would fill them."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL).replace("$namespace", ".*")
            found.append((panel["title"], target.get("legendFormat", ""), expr))
    return found


def _query_range(port: int, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": SCRAPE_SECONDS})
    answer = json.loads(_get(f"http://127.0.0.1:{port}/api/v1/query_range?{params}", timeout=30))
    if answer.get("status") != "success":
        raise SystemExit(f"prometheus refused {expr}: {answer}")
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def run(app_python: str) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    # bench/serve.py, a script beside this one (bench/ is no package): its request body, credentials, wrk driver.
    import serve  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    data = WORK / "dashboard-run"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    store = data / "models"
    env = {"PYTHONPATH": str(REPO / "app"), "PATH": "/usr/bin:/bin"}
    trainer_port, prom_port = _free_port(), _free_port()
    servers = [(_free_port(), _free_port()) for _ in range(2)]
    prom = _prometheus(
        prom_port,
        {
            "trainer": [f"127.0.0.1:{trainer_port}"],
            "server": [f"127.0.0.1:{metrics}" for _, metrics in servers],
        },
        data,
    )
    procs: list[subprocess.Popen[bytes]] = [prom]
    try:
        start = time.time()
        print("dashboard_plot: training (its metrics scraped every second)", flush=True)
        train_env = {
            **env, "PYTHONPATH": str(REPO / "examples" / "digits"), "MLAPP_METRICS_PORT": str(trainer_port),
            "MLAPP_METRICS_LINGER_SECONDS": "3",
        }  # fmt: skip
        run = data / "run"
        cmd = [app_python, "-m", "digits.train", "--output-dir", str(run), "--model-name", MODEL,
               "--model-version", VERSION, "--epochs", "30", "--batch-size", "32", "--learning-rate", "0.003",
               "--gate", "accuracy>=0.9"]  # fmt: skip
        trained = subprocess.run(cmd, env=train_env, capture_output=True, text=True, check=False, timeout=600)
        (data / "trainer.log").write_text(trained.stdout + trained.stderr, encoding="utf-8")
        if trained.returncode != 0:
            raise SystemExit(f"the trainer exited {trained.returncode}; see {data / 'trainer.log'}")
        publish = [app_python, "-m", "mlapp.publish", "--run", str(run), "--model-dir", str(store),
                   "--model-name", MODEL, "--version", VERSION, "--gate", "accuracy>=0.9"]  # fmt: skip
        subprocess.run(publish, env=env, check=True, timeout=120)
        for port, metrics in servers:
            server_env = {
                **env, "MLAPP_HOST": "127.0.0.1", "MLAPP_PORT": str(port), "MLAPP_METRICS_PORT": str(metrics),
                "MLAPP_PLAIN_HTTP": "1", "MLAPP_MODEL_DIR": str(store), "MLAPP_MODEL_NAME": MODEL,
                "MLAPP_MODEL_VERSION": VERSION, "MLAPP_AUTH_USERNAME": serve.USER,
                "MLAPP_AUTH_PASSWORD": serve.PASSWORD,
            }  # fmt: skip
            log = (data / f"server-{port}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [app_python, "-m", "mlapp.serve"], env=server_env, stdout=log, stderr=subprocess.STDOUT
                )
            )
            _wait(f"http://127.0.0.1:{port}/v2/health/ready", "the server", procs[-1])
        body = serve.json_body()
        for seconds, connections, auth in PHASES:
            print(f"dashboard_plot: {seconds}s at {connections} connection(s) a server, auth={auth}", flush=True)
            with concurrent.futures.ThreadPoolExecutor(len(servers)) as pool:
                loads = [
                    pool.submit(
                        serve.wrk_load,
                        f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer",
                        body,
                        auth,
                        connections,
                        seconds,
                    )
                    for port, _ in servers
                ]
                for load in loads:
                    load.result()  # a load that failed fails the run, not a thread in silence
        time.sleep(3 * SCRAPE_SECONDS)
        end = time.time()
        panels = [
            {"title": title, "legend": legend, "expr": expr, "result": _query_range(prom_port, expr, start, end)}
            for title, legend, expr in _queries()
        ]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
    RESULTS.write_text(json.dumps({"start": start, "end": end, "panels": panels}), encoding="utf-8")
    print(f"dashboard_plot: {len(panels)} queries answered over {end - start:.0f}s; wrote {RESULTS}")


def _legend(template: str, labels: dict[str, str]) -> str:
    for key, value in labels.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def plot() -> None:
    import matplotlib as mpl  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - its own venv

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    recorded = json.loads(RESULTS.read_text(encoding="utf-8"))
    start = recorded["start"]
    by_title: dict[str, list[dict[str, Any]]] = {}
    for query in recorded["panels"]:
        by_title.setdefault(query["title"], []).append(query)
    drawn = [
        ("Request rate", "requests/s"), ("Error rate", "share of requests"), ("Latency p50 / p99", "seconds"),
        ("Inference batch size", "rows per run"), ("Replicas ready", "servers"),
        ("Held-out accuracy against the gate", "accuracy"), ("Training progress", "epochs done / loss"),
    ]  # fmt: skip
    fig, axes = plt.subplots(3, 3, figsize=(18, 12))
    for ax, (title, unit) in zip(axes.flat, drawn, strict=False):
        for query in by_title[title]:
            for series in query["result"]:
                times = [float(t) - start for t, _ in series["values"]]
                values = [float(v) for _, v in series["values"]]
                ax.plot(times, values, label=_legend(query["legend"], series["metric"]) or query["expr"][:40])
        ax.set_title(title)
        if title == "Request rate":  # the refused-login phase runs three orders of magnitude above the rest
            ax.set_yscale("log")
        ax.set_xlabel("seconds into the run")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    text_ax = axes.flat[len(drawn)]
    text_ax.axis("off")
    lines = []
    for title in ("Model version served", "Last training run against the gate"):
        lines.append(title)
        for query in by_title[title]:
            for series in query["result"]:
                lines.append(f"  {_legend(query['legend'], series['metric'])}: {float(series['values'][-1][1]):g}")
    text_ax.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=10)
    for ax in axes.flat[len(drawn) + 1 :]:
        ax.axis("off")
    fig.suptitle("mlstack dashboard (deploy/grafana/mlstack.json), its queries evaluated by Prometheus on a local run")
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, dpi=80)
    print(f"dashboard_plot: wrote {PNG}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/dashboard_plot.py", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("run", "plot"))
    parser.add_argument(
        "--app-python", default=str(REPO / "venv" / "bin" / "python"), help="runs the trainer and servers"
    )
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.step == "run":
        run(args.app_python)
    else:
        plot()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

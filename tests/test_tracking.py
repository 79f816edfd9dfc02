"""W&B's mode (asc.cli.tracking), the shipped sweep files as ``wandb agent`` runs them, and ``asc sweep``'s
checks of a sweep file. Nothing here starts a W&B run or touches the network."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from asc.cli.main import main
from asc.cli.tracking import apply_wandb_mode, wandb_mode
from tests.helpers import one_error_line

REPO = Path(__file__).parents[1]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
KEY = "0123456789abcdef0123456789abcdef01234567"  # the shape of a W&B API key (40 characters)
#: What decides W&B's mode, plus the variables of a sweep agent's trial; each test sets only its own.
VARIABLES = ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "NETRC", "WANDB_SWEEP_ID",
             "WANDB_RUN_ID", "WANDB_PROJECT", "WANDB_ENTITY", "ASC_DATA_ROOT")


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A user who has not set W&B up: none of its variables, an empty home; returns where a netrc may go.
    monkeypatch restores the variables afterwards, also those that ``main`` sets."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path / "netrc"


def netrc_entry(path: Path, host: str) -> Path:
    """What ``wandb login`` writes for ``host``."""
    path.write_text(f"machine {host}\n  login user\n  password {KEY}\n")
    return path


@pytest.mark.parametrize(("variables", "netrc_host", "expected"), [
    ({"WANDB_API_KEY": KEY}, None, "online"),
    ({"WANDB_IDENTITY_TOKEN_FILE": "/run/secrets/wandb-token"}, None, "online"),  # W&B's federated identity
    ({}, "api.wandb.ai", "online"),
    ({}, "example.org", "offline"),  # another host's entry is no W&B login
    ({"WANDB_BASE_URL": "https://wandb.example.org:8443"}, "wandb.example.org:8443", "online"),
    ({"WANDB_BASE_URL": "https://wandb.example.org"}, "api.wandb.ai", "offline"),  # the login is for another server
    ({"WANDB_MODE": "offline", "WANDB_API_KEY": KEY}, "api.wandb.ai", "offline"),  # the user's choice
    ({"WANDB_MODE": "online"}, None, "online"),  # the user's choice, key or not
    ({"WANDB_MODE": "disabled"}, "api.wandb.ai", "disabled"),
    ({}, None, "offline"),
])
def test_mode_is_online_only_when_the_user_set_wandb_up(bare: Path, monkeypatch: pytest.MonkeyPatch,
                                                         variables: dict[str, str], netrc_host: str | None,
                                                         expected: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if netrc_host:
        monkeypatch.setenv("NETRC", str(netrc_entry(bare, netrc_host)))
    assert wandb_mode() == expected


def test_the_login_in_the_home_netrc_counts(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NETRC the file is ~/.netrc, where ``wandb login`` writes."""
    netrc_entry(Path(os.environ["HOME"]) / ".netrc", "api.wandb.ai")
    assert wandb_mode() == "online"


@pytest.mark.parametrize("content", ["machine api.wandb.ai\n  bogus token\n", "machine api.wandb.ai password",
                                     b"\xff\xfe\x00binary", "directory"])
def test_an_unreadable_netrc_is_no_login(bare: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes) -> None:
    if content == "directory":
        bare.mkdir()
    elif isinstance(content, bytes):
        bare.write_bytes(content)
    else:
        bare.write_text(content)
    monkeypatch.setenv("NETRC", str(bare))
    assert wandb_mode() == "offline"


@pytest.mark.parametrize("netrc_host", ["api.wandb.ai", "example.org"])
def test_the_netrc_is_read_as_wandb_reads_it(bare: Path, monkeypatch: pytest.MonkeyPatch, netrc_host: str) -> None:
    """Online exactly when W&B's own reader (what ``wandb.init`` logs in with) finds a key."""
    from wandb.sdk.lib.wbauth import wbnetrc

    monkeypatch.setenv("NETRC", str(netrc_entry(bare, netrc_host)))
    found = wbnetrc.read_netrc_auth(host="https://api.wandb.ai")
    assert (wandb_mode() == "online") == (found == KEY)


def test_applying_exports_offline_and_leaves_online_to_wandb(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline is exported for W&B and child processes; online leaves WANDB_MODE unset, so that W&B's default
    (online) and a ``wandb offline`` the user ran still apply."""
    monkeypatch.delenv("WANDB_SILENT")
    assert apply_wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"
    assert os.environ["WANDB_SILENT"] == "true"
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", str(netrc_entry(bare, "api.wandb.ai")))
    assert apply_wandb_mode() == "online" and "WANDB_MODE" not in os.environ
    monkeypatch.setenv("WANDB_MODE", "")  # an empty variable is no choice (and W&B rejects it)
    assert apply_wandb_mode() == "online" and "WANDB_MODE" not in os.environ


def test_a_sweep_agents_trial_logs_online(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``wandb agent`` after ``wandb login``: the key is in the netrc only (the agent does not export it)."""
    monkeypatch.setenv("NETRC", str(netrc_entry(bare, "api.wandb.ai")))
    for name, value in {"WANDB_SWEEP_ID": "s1", "WANDB_RUN_ID": "r7", "WANDB_PROJECT": "asc-dcase2022"}.items():
        monkeypatch.setenv(name, value)
    assert wandb_mode() == "online"
    assert apply_wandb_mode() == "online" and "WANDB_MODE" not in os.environ


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to resolve a name or open a connection, recorded and refused."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network attempt in a test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def trials(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """``asc sweep``'s trials, recorded instead of trained: their arguments, metric and W&B mode."""
    import asc.cli.lightning_cli as lightning_cli

    calls: list[dict[str, object]] = []

    def fit_and_score(args: list[str], metric: str) -> float:
        calls.append({"args": args, "metric": metric, "mode": os.environ.get("WANDB_MODE")})
        return 0.25 * len(calls)

    monkeypatch.setattr(lightning_cli, "fit_and_score", fit_and_score)
    return calls


@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda path: path.stem)
def test_offline_sweep_never_goes_online_and_scores_by_selection(bare: Path, tmp_path: Path, no_network: list,
                                                                 trials: list, sweep_file: Path) -> None:
    """``asc sweep`` without W&B set up: every trial runs offline (no prompt, no network) and is scored by
    val/selection, the metric model selection uses; the results go to sweep_results.json."""
    out = tmp_path / "sweep"
    assert main(["sweep", str(sweep_file), "--count", "2", "--out", str(out), "--", "--data.root", "data"]) == 0
    assert [trial["mode"] for trial in trials] == ["offline", "offline"] and not no_network
    assert {trial["metric"] for trial in trials} == {"val/selection"}
    results = json.loads((out / "sweep_results.json").read_text())
    assert [result["val/selection"] for result in results] == [0.5, 0.25]


def agent_command(sweep: dict) -> tuple[list[str], dict[str, object]]:
    """The command line ``wandb agent`` runs for one trial: the file's ``command`` with ``${args}`` replaced by
    W&B's own rendering (``--key=value``) of values its search engine proposes."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    import sweeps

    proposal = sweeps.next_run(sweep, [], validate=True)
    rendered = create_sweep_command_args({"args": proposal.config})
    command = [part for item in sweep["command"]
               for part in (rendered[item[2:-1]] if item.startswith("${") else [item])]
    return command, {key: item["value"] for key, item in proposal.config.items()}


@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda path: path.stem)
def test_shipped_sweep_runs_under_a_wandb_agent(bare: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture, sweep_file: Path) -> None:
    """A trial as ``wandb agent`` starts it after ``wandb login``, from the repository root: its command line
    parses, carries the proposed values and the data root, and leaves W&B online (the agent's key is in the
    netrc only). The file is valid for ``wandb sweep`` and optimizes the metric model selection uses."""
    import sweeps

    sweep = yaml.safe_load(sweep_file.read_text())
    assert sweeps.schema_violations_from_proposed_config(sweep) == []
    base = yaml.safe_load((REPO / "configs" / "report" / "base.yaml").read_text())
    monitors = {c.get("init_args", {}).get("monitor") for c in base["trainer"]["callbacks"]} - {None}
    assert sweep["metric"] == {"name": "val/selection", "goal": "maximize"} and monitors == {"val/selection"}
    header = sweep_file.read_text().split("\nprogram:")[0]
    assert all(step in header for step in ("wandb login", "export ASC_DATA_ROOT=", "wandb agent", "asc sweep"))

    monkeypatch.setenv("NETRC", str(netrc_entry(bare, "api.wandb.ai")))
    for name, value in {"WANDB_SWEEP_ID": "s1", "WANDB_RUN_ID": "r7", "WANDB_PROJECT": sweep["project"],
                        "ASC_DATA_ROOT": str(tmp_path / "TAU")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(REPO)
    command, values = agent_command(sweep)
    assert command[:2] == ["asc", "fit"] and sum(part.split("=")[0][2:] in values for part in command) == len(values)
    starts = [part for part in command if part.startswith("--model.init_ckpt=runs/report/")]  # the stage before
    assert len(starts) == 1 and starts[0].endswith("/checkpoints/last.ckpt")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:  # jsonargparse exits after printing the config
        main([*command[1:], f"--data.root={os.environ['ASC_DATA_ROOT']}", "--print_config"])
    assert exited.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["root"] == str(tmp_path / "TAU")
    def printed_value(key: str) -> object:  # model.admm.dual_lr -> printed["model"]["init_args"]["admm"]["dual_lr"]
        node = printed["model"]["init_args"]
        for part in key.split(".")[1:]:
            node = node[part]
        return node

    assert {key: printed_value(key) for key in values} == pytest.approx(values)
    assert "WANDB_MODE" not in os.environ  # W&B's default: online, with the netrc's key


def shipped_with(**changes: object) -> str:
    sweep = yaml.safe_load((REPO / "sweeps" / "pruning.yaml").read_text())
    return yaml.safe_dump({**sweep, **changes})


@pytest.mark.parametrize(("content", "expected"), [
    ("method: bayes\nmetric: {name: val/selection\n", "not valid YAML (line 3"),
    ("- method\n- metric\n", "not a W&B sweep config"),
    (shipped_with(metric={"goal": "maximize"}), "metric.name: not set"),
    (shipped_with(metric={"name": 3}), "metric.name: expected"),
    (shipped_with(parameters=["model.primal_lr"]), "parameters: expected a mapping"),
    (shipped_with(parameters={"model.primal_lr": {"values": "0.001"}}), "invalid hyperparameter configuration"),
    (shipped_with(command=["asc", "fit", {"--config": "x"}, "${args}"]), "command: expected a list of strings"),
], ids=["yaml-syntax", "a-list", "metric-without-name", "metric-name-a-number", "parameters-a-list",
        "parameter-values-a-string", "command-with-a-mapping"])
def test_a_bad_sweep_file_gets_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, trials: list, content: str,
                                        expected: str) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(content)
    line = one_error_line(capsys, "sweep", str(path), "--count", "1", "--out", str(tmp_path / "out"))
    assert line.startswith(f"asc: error: {path}: ") and expected in line, line
    assert not trials


def test_sweep_results_are_written_whole_or_not_at_all(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        trials: list) -> None:
    """An --out that cannot be a folder stops before the first trial; a results file that cannot be written
    is one line naming it, with no partial file left."""
    sweep = str(REPO / "sweeps" / "pruning.yaml")
    blocked = tmp_path / "file"
    blocked.write_text("")
    line = one_error_line(capsys, "sweep", sweep, "--count", "1", "--out", str(blocked / "out"))
    assert str(blocked / "out") in line and not trials
    out = tmp_path / "out"
    (out / "sweep_results.json").mkdir(parents=True)  # os.replace cannot put a file there
    line = one_error_line(capsys, "sweep", sweep, "--count", "1", "--out", str(out))
    assert f"{out / 'sweep_results.json'}: cannot write the sweep results" in line and len(trials) == 1
    assert sorted(path.name for path in out.iterdir()) == ["sweep_results.json"]

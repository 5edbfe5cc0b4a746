# SPDX-License-Identifier: Apache-2.0
"""make_models: the job plan of `make models`, and two workers running real trainer jobs."""

from __future__ import annotations

import torch

from dyndnn_ros.training.make_models import Job, plan, run


def test_every_final_job_comes_after_every_other_job_of_its_family() -> None:
    jobs = {j.name: j for j in plan(["groupconv", "ofa"])}
    assert len(jobs) == len(plan(["groupconv", "ofa"]))

    def inputs(name: str) -> set[str]:
        return set(jobs[name].after).union(*(inputs(a) for a in jobs[name].after))

    for job in jobs.values():
        assert job.argv[job.argv.index("--threads") + 1] == "1"
    for family in ("groupconv", "ofa"):
        others = {n for n, j in jobs.items() if j.family == family} - {f"{family} final"}
        assert inputs(f"{family} final") == others
    assert {"ofa search", "ofa shrinking"} <= inputs("ofa from scratch, most accurate")
    assert {j.family for j in plan(["ofa"])} == {"ofa"}


def test_twins_of_the_last_run_start_beside_the_shrinking(tmp_path, monkeypatch) -> None:
    import yaml

    from dyndnn_ros.training import make_models

    monkeypatch.setattr(make_models, "OFA_OUT", tmp_path)
    assert make_models.last_twins() == []  # no last run: the twins wait for the search
    rows = [{"id": "k333_e333_d111", "scratch_accuracy": 0.88}, {"id": "k357_e346_d123"},
            {"id": "k999_e666_d333", "scratch_accuracy": 0.5},  # not in the search space
            {"id": "k777_e664_d323", "scratch_accuracy": 0.89}]
    (tmp_path / "accuracy.yaml").write_text(yaml.safe_dump({"subnets": rows}))
    assert make_models.last_twins() == ["k777_e664_d323", "k333_e333_d111"]
    jobs = {j.name: j for j in make_models.ofa_jobs()}
    guess = jobs["ofa from scratch k777_e664_d323 (a twin of the last run)"]
    assert guess.after == () and guess.argv[-2:] == ("--scratch-only", "k777_e664_d323")
    assert guess.name in jobs["ofa from scratch, fastest"].after


def test_two_workers_run_jobs_whose_stages_the_final_run_finds(tmp_path) -> None:
    from dyndnn_ros.training.train_groupconv import main

    def common(name: str) -> tuple[str, ...]:
        return ("--out", str(tmp_path / name), "--stages", str(tmp_path / name / "stages"),
                "--epochs", "1", "--groups", "2", "--threads", "1", "--no-dense")

    probe = ("--head-pool-candidates", "1")  # the digits recipe's own head pooling
    parts = [
        Job("incremental", "groupconv", common("jobs") + ("--stop-after", "incremental")),
        Job("static g1", "groupconv", common("jobs") + ("--static-only", "1")),
        Job("static g2", "groupconv", common("jobs") + ("--static-only", "2")),
        Job("probe", "groupconv", common("jobs") + probe + ("--stop-after", "probes")),
    ]
    final = Job("final", "groupconv", common("jobs") + probe, tuple(j.name for j in parts))
    run(parts + [final], workers=2)
    saved = sorted(p.name for p in (tmp_path / "jobs" / "stages").rglob("*.pt"))
    assert saved == ["probe_head_pool1_1ep.pt", "stage_g1.pt", "stage_g2.pt", "static_g1.pt",
                     "static_g2.pt"]
    log = (tmp_path / "jobs" / "train.log").read_text()
    assert log.count("make_models job") == 10 and "stage g2: loaded from" in log
    assert "all 5 jobs done" in log

    def weights(name: str) -> dict[str, torch.Tensor]:
        return torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["state_dict"]

    first = weights("jobs")
    run([Job("rerun", "groupconv", final.argv)], workers=1)  # finds every stage: no training
    assert main(list(common("alone") + probe)) == 0  # one process, the probe first
    for other in (weights("jobs"), weights("alone")):
        assert all(torch.equal(first[k], other[k]) for k in other)


def test_the_twins_are_the_most_accurate_then_the_fastest_member() -> None:
    from dyndnn_ros.training.train_ofa import scratch_picks

    members = [{"id": name} for name in ("fastest", "b", "middle", "d", "most accurate")]
    assert scratch_picks(members, 2) == [4, 0]
    assert scratch_picks(members, 3) == [4, 0, 2]
    assert scratch_picks(members[:1], 2) == [0]

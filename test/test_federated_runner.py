"""`run_federation`'s bookkeeping around the fleet: a rerun removes what an earlier run wrote
into server/ and vehicles/ and nothing else (no command deletes what it did not write)."""
from cvgl_ros.federated.runner import remove_earlier_run
from cvgl_ros.federated.settings import FederationSettings


def tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_rerun_removes_the_earlier_runs_files_and_keeps_everyone_elses(tmp_path):
    run = tmp_path / "run"
    for name in ("rounds.jsonl", "result.json", "model.pt", "encoders.pt"):
        write(run / "server" / name)
    for k in (0, 7):                                    # v7: an earlier run had more vehicles
        for name in ("rounds.jsonl", "local_state.pt", "model.pt", "sent.pt"):
            write(run / "vehicles" / f"v{k}" / name)
    theirs = tmp_path / "theirs.txt"
    write(theirs, "keep")
    (run / "vehicles" / "v0" / "link.pt").symlink_to(theirs)
    (run / "vehicles" / "v7" / "model.pt").unlink()
    (run / "vehicles" / "v7" / "model.pt").symlink_to(theirs)  # a link at a name the run writes
    write(run / "server" / "notes.md")                 # someone else's, in a directory the run writes
    write(run / "vehicles" / "vx" / "model.pt")        # not a vehicle's directory
    write(run / "summary.json")                        # replaced atomically at the end of the run, not removed
    write(run / "mine" / "model.pt")

    remove_earlier_run(FederationSettings(out=str(run), data=str(tmp_path)))

    assert tree(run) == ["mine", "mine/model.pt", "server", "server/notes.md", "summary.json", "vehicles",
                         "vehicles/v0", "vehicles/v0/link.pt", "vehicles/vx", "vehicles/vx/model.pt"]
    assert theirs.read_text() == "keep"


def test_a_run_directory_of_cvgls_alone_is_left_without_server_and_vehicles(tmp_path):
    run = tmp_path / "run"
    write(run / "server" / "rounds.jsonl")
    write(run / "vehicles" / "v0" / "rounds.jsonl")
    write(run / "vehicles" / "v1" / "model.pt")
    remove_earlier_run(FederationSettings(out=str(run), data=str(tmp_path)))
    assert tree(run) == []
    remove_earlier_run(FederationSettings(out=str(tmp_path / "new"), data=str(tmp_path)))  # nothing there: nothing to do
    assert not (tmp_path / "new").exists()

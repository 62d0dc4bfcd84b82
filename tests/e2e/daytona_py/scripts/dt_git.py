"""sandbox.git through Daytona's SDK, against repositories inside the sandbox (it has no network yet): init,
clone, status, add, commit, branches, checkout, reset, restore, remotes, push, pull, config."""

from __future__ import annotations

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona

out: dict = {}
daytona = Daytona()
with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(labels=TEST_LABEL))  # debian-12 has git
    made.append(box)
    git, fs, sh = box.git, box.fs, box.process.exec
    git.configure_user("Agent", "agent@example.com")
    sh("git init -q --bare /srv/origin.git")  # the default branch, as git.init makes

    # a fresh repository, pushed to the bare origin
    git.init("/workspace/proj")
    fs.upload_file(b"one\n", "/workspace/proj/a.txt")
    out["status_untracked"] = [
        (f.name, str(getattr(f.worktree, "value", f.worktree)))
        for f in git.status("/workspace/proj").file_status
    ]
    git.add("/workspace/proj", ["a.txt"])
    c1 = git.commit("/workspace/proj", "first", "Agent", "agent@example.com")
    out["sha"] = c1.sha
    git.remote_add("/workspace/proj", "origin", "/srv/origin.git")
    out["remotes"] = [r.name for r in git.remotes("/workspace/proj").remotes]
    git.push("/workspace/proj", set_upstream=True)

    # a clone of it, a branch, and changes going back and forth
    git.clone("/srv/origin.git", "/workspace/clone")
    out["clone_file"] = fs.download_file("/workspace/clone/a.txt").decode()
    default = git.branches("/workspace/clone").current
    git.create_branch("/workspace/clone", "feature")
    git.checkout_branch("/workspace/clone", "feature")
    br = git.branches("/workspace/clone")
    out["branches"] = {"list": sorted(br.branches), "current": br.current, "default": default}
    git.checkout_branch("/workspace/clone", default)
    git.delete_branch("/workspace/clone", "feature")
    out["branches_after"] = sorted(git.branches("/workspace/clone").branches)
    out["delete_missing_branch"] = catch(lambda: git.delete_branch("/workspace/clone", "feature"))

    fs.upload_file(b"two\n", "/workspace/clone/a.txt")
    git.restore("/workspace/clone", ["a.txt"])
    out["restored"] = fs.download_file("/workspace/clone/a.txt").decode()
    fs.upload_file(b"two\n", "/workspace/clone/a.txt")
    git.add("/workspace/clone", ["a.txt"])
    git.commit("/workspace/clone", "second", "Agent", "agent@example.com")
    git.push("/workspace/clone")
    git.pull("/workspace/proj")
    out["pulled"] = fs.download_file("/workspace/proj/a.txt").decode()
    st = git.status("/workspace/proj")
    out["status_clean"] = {
        "branch": st.current_branch,
        "files": len(st.file_status),
        "ahead": st.ahead,
        "behind": st.behind,
    }
    out["empty_commit"] = catch(
        lambda: git.commit("/workspace/proj", "nothing", "Agent", "agent@example.com")
    )
    out["not_a_repo"] = catch(lambda: git.status("/workspace"))
emit(out)

"""sandbox.fs through Daytona's SDK: upload/download single and bulk, list, info, folders, delete, move, find,
search, replace, permissions, and the errors they raise."""

from __future__ import annotations

import os
import tempfile

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona, FileDownloadRequest, FileUpload

out: dict = {}
daytona = Daytona()
local = tempfile.mkdtemp()
with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(snapshot="busybox", labels=TEST_LABEL))
    made.append(box)
    fs = box.fs
    home = box.get_user_home_dir()
    work = box.get_work_dir()
    out["dirs"] = [home, work]

    # single uploads: bytes and a local file; single downloads: to memory and to a local file
    fs.upload_file(b"hello world\n", "/workspace/a.txt")
    src = os.path.join(local, "big.bin")
    with open(src, "wb") as fh:
        fh.write(os.urandom(3 << 20))
    fs.upload_file(src, "/workspace/sub/big.bin")
    out["download_bytes"] = fs.download_file("/workspace/a.txt").decode()
    dst = os.path.join(local, "copy.bin")
    fs.download_file("/workspace/sub/big.bin", dst)
    out["download_local_same"] = open(src, "rb").read() == open(dst, "rb").read()

    # bulk
    fs.upload_files(
        [FileUpload(source=b"one\n", destination="/workspace/bulk/1.txt"),
         FileUpload(source=b"two needle\n", destination="/workspace/bulk/2.txt"),
         FileUpload(source=src, destination="/workspace/bulk/3.bin")]
    )  # fmt: skip
    got = fs.download_files(
        [FileDownloadRequest(source="/workspace/bulk/1.txt"), FileDownloadRequest(source="/workspace/bulk/2.txt"),
         FileDownloadRequest(source="/workspace/nope.txt")]
    )  # fmt: skip
    out["bulk_download"] = [
        {"source": r.source, "result": r.result.decode() if isinstance(r.result, bytes) else r.result,
         "error": r.error, "error_code": getattr(r.error_details, "error_code", None) if r.error_details else None}
        for r in got
    ]  # fmt: skip

    # list, info, folders
    out["list"] = sorted((f.name, f.is_dir) for f in fs.list_files("/workspace"))
    info = fs.get_file_info("/workspace/a.txt")
    out["info"] = {"name": info.name, "size": info.size, "is_dir": info.is_dir, "mode": info.mode,
                   "permissions": info.permissions, "owner": info.owner}  # fmt: skip
    fs.create_folder("/workspace/newdir/deeper", "750")
    out["folder_perm"] = fs.get_file_info("/workspace/newdir/deeper").permissions

    # find, search, replace
    out["find"] = [(m.file, m.line, m.content) for m in fs.find_files("/workspace/bulk", "needle")]
    out["search"] = sorted(fs.search_files("/workspace", "*.txt").files)
    res = fs.replace_in_files(["/workspace/bulk/1.txt", "/workspace/bulk/2.txt"], "one", "ONE")
    out["replace"] = [(r.file, r.success) for r in res]
    out["replaced"] = fs.download_file("/workspace/bulk/1.txt").decode()

    # move, permissions, delete
    fs.move_files("/workspace/a.txt", "/workspace/newdir/moved.txt")
    out["moved"] = fs.download_file("/workspace/newdir/moved.txt").decode()
    fs.set_file_permissions("/workspace/newdir/moved.txt", mode="600", owner="nobody")
    info = fs.get_file_info("/workspace/newdir/moved.txt")
    out["perms"] = {"permissions": info.permissions, "owner": info.owner}
    fs.delete_file("/workspace/bulk/3.bin")
    out["delete_nonempty"] = catch(lambda: fs.delete_file("/workspace/newdir"))
    fs.delete_file("/workspace/newdir", recursive=True)
    out["after_delete"] = sorted(f.name for f in fs.list_files("/workspace"))

    # errors: Daytona's file exception classes
    out["info_missing"] = catch(lambda: fs.get_file_info("/workspace/missing"))
    out["download_missing"] = catch(lambda: fs.download_file("/workspace/missing"))
    out["move_missing"] = catch(lambda: fs.move_files("/workspace/missing", "/workspace/x"))
emit(out)

// sandbox.fs through the Daytona TypeScript SDK.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DaytonaConflictError, DaytonaError, DaytonaFileNotFoundError, DaytonaNotFoundError } from '@daytonaio/sdk';
import { createBox, rejectsWith } from './helpers.mjs';

let box;
let local;
before(async () => {
  box = await createBox();
  local = await mkdtemp(join(tmpdir(), 'sandburg-ts-'));
});
after(async () => {
  if (local) await rm(local, { recursive: true, force: true });
});

const sh = async (cmd) => {
  const r = await box.process.executeCommand(cmd);
  assert.equal(r.exitCode, 0, `${cmd}: ${r.result}`);
  return r.result;
};

describe('upload and download', () => {
  test('single file from a Buffer and back, binary-safe', async () => {
    const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) % 256));
    await box.fs.uploadFile(data, '/workspace/up/bin.dat');
    assert.equal(await sh('stat -c %s /workspace/up/bin.dat'), `${data.length}\n`);
    const back = await box.fs.downloadFile('/workspace/up/bin.dat');
    assert.ok(Buffer.isBuffer(back));
    assert.ok(back.equals(data), 'downloaded bytes differ');
  });

  test('single file from and to a local path; an empty file', async () => {
    const src = join(local, 'src.txt');
    await writeFile(src, 'from disk\n');
    await box.fs.uploadFile(src, '/workspace/from-disk.txt');
    assert.equal(await sh('cat /workspace/from-disk.txt'), 'from disk\n');
    const dst = join(local, 'nested', 'dst.txt');
    await box.fs.downloadFile('/workspace/from-disk.txt', dst);
    assert.equal(await readFile(dst, 'utf8'), 'from disk\n');

    await box.fs.uploadFile(Buffer.alloc(0), '/workspace/empty');
    assert.equal(await sh('stat -c %s /workspace/empty'), '0\n');
  });

  test('bulk upload and bulk download, with a per-file error', async () => {
    const files = [
      { source: Buffer.from('alpha'), destination: '/workspace/bulk/a.txt' },
      { source: Buffer.from('beta\n'), destination: '/workspace/bulk/deeper/b.txt' },
      { source: Buffer.from('with spaces'), destination: '/workspace/bulk/with space.txt' },
    ];
    await box.fs.uploadFiles(files);
    assert.equal(await sh('cd /workspace/bulk && cat a.txt deeper/b.txt "with space.txt"'), 'alphabeta\nwith spaces');

    const res = await box.fs.downloadFiles([
      { source: '/workspace/bulk/a.txt' },
      { source: '/workspace/bulk/deeper/b.txt', destination: join(local, 'b.txt') },
      { source: '/workspace/bulk/with space.txt' },
      { source: '/workspace/bulk/missing.txt' },
    ]);
    assert.deepEqual(
      res.map((r) => r.source),
      ['/workspace/bulk/a.txt', '/workspace/bulk/deeper/b.txt', '/workspace/bulk/with space.txt', '/workspace/bulk/missing.txt'],
    );
    assert.equal(res[0].result.toString(), 'alpha');
    assert.equal(res[0].error, undefined);
    assert.equal(res[1].result, join(local, 'b.txt'));
    assert.equal(await readFile(join(local, 'b.txt'), 'utf8'), 'beta\n');
    assert.equal(res[2].result.toString(), 'with spaces');
    assert.ok(res[3].error, 'a missing file has an error');
    assert.equal(res[3].result, undefined);
    assert.equal(res[3].errorDetails?.statusCode, 404);
    assert.equal(res[3].errorDetails?.code, 'FILE_NOT_FOUND');
  });

  // The SDK parses bulk-download answers with busboy, which decodes a plain `filename="..."` parameter as latin1
  // and prefers `filename*=utf-8''<percent-encoded>` when present; the part is matched to the request by that name.
  for (const [what, name] of [
    ['non-ASCII', 'ünïcode ✓.txt'],
    ['a double quote', 'say "hi".txt'],
  ]) {
    test(
      `bulk round trip of a path with ${what}`,
      async () => {
        const path = `/workspace/names/${name}`;
        await box.fs.uploadFiles([{ source: Buffer.from(what), destination: path }]);
        assert.equal((await box.fs.getFileDetails(path)).size, Buffer.byteLength(what));
        assert.equal((await box.fs.downloadFile(path)).toString(), what);
      },
    );
  }

  test('downloadFile of a missing file: DaytonaFileNotFoundError', async () => {
    await rejectsWith(box.fs.downloadFile('/workspace/nope.txt'), DaytonaFileNotFoundError, { statusCode: 404 });
  });

  test('uploadFileStream and downloadFileStream', async () => {
    const { Readable } = await import('node:stream');
    const chunks = ['one ', 'two ', 'three'];
    await box.fs.uploadFileStream(Readable.from(chunks.map((c) => Buffer.from(c))), '/workspace/streamed.txt');
    const stream = await box.fs.downloadFileStream('/workspace/streamed.txt');
    const got = [];
    for await (const c of stream) got.push(c);
    assert.equal(Buffer.concat(got).toString(), 'one two three');
  });
});

describe('files and folders', () => {
  test('createFolder, listFiles, getFileDetails', async () => {
    await box.fs.createFolder('/workspace/tree/sub', '750');
    await box.fs.uploadFile(Buffer.from('12345'), '/workspace/tree/five.txt');
    const info = await box.fs.getFileDetails('/workspace/tree/sub');
    assert.equal(info.isDir, true);
    assert.equal(info.name, 'sub');
    assert.equal(info.permissions, '0750');
    assert.equal(info.owner, 'root');
    assert.equal(info.group, 'root');
    assert.ok(info.modTime);

    const file = await box.fs.getFileDetails('/workspace/tree/five.txt');
    assert.equal(file.isDir, false);
    assert.equal(file.size, 5);
    assert.equal(file.mode, '-rw-r--r--');

    const entries = await box.fs.listFiles('/workspace/tree');
    assert.deepEqual(
      entries.map((e) => [e.name, e.isDir]),
      [
        ['five.txt', false],
        ['sub', true],
      ],
    );
    await box.fs.uploadFile(Buffer.from('x'), '/workspace/tree/sub/inner.txt');
    const deep = await box.fs.listFiles('/workspace/tree', { depth: 2 });
    assert.ok(deep.some((e) => e.name === 'inner.txt'), JSON.stringify(deep.map((e) => e.path ?? e.name)));

    await rejectsWith(box.fs.getFileDetails('/workspace/tree/none'), DaytonaFileNotFoundError, { statusCode: 404 });
    await rejectsWith(box.fs.listFiles('/workspace/tree/none'), DaytonaNotFoundError, { statusCode: 404 });
  });

  test('deleteFile, recursive and not', async () => {
    await box.fs.createFolder('/workspace/del/inner', '755');
    await box.fs.uploadFile(Buffer.from('x'), '/workspace/del/inner/f');
    await box.fs.deleteFile('/workspace/del/inner/f');
    await rejectsWith(box.fs.getFileDetails('/workspace/del/inner/f'), DaytonaFileNotFoundError);
    await box.fs.uploadFile(Buffer.from('x'), '/workspace/del/inner/g');
    await rejectsWith(box.fs.deleteFile('/workspace/del'), DaytonaConflictError, { statusCode: 409 });
    await box.fs.deleteFile('/workspace/del', true);
    await rejectsWith(box.fs.getFileDetails('/workspace/del'), DaytonaFileNotFoundError);
    await rejectsWith(box.fs.deleteFile('/workspace/del'), DaytonaFileNotFoundError);
  });

  test('moveFiles renames files and directories', async () => {
    await box.fs.uploadFile(Buffer.from('move me'), '/workspace/mv/src.txt');
    await box.fs.moveFiles('/workspace/mv/src.txt', '/workspace/mv/dst.txt');
    assert.equal((await box.fs.downloadFile('/workspace/mv/dst.txt')).toString(), 'move me');
    await rejectsWith(box.fs.getFileDetails('/workspace/mv/src.txt'), DaytonaFileNotFoundError);
    await box.fs.moveFiles('/workspace/mv', '/tmp/mv-moved');
    assert.equal(await sh('cat /tmp/mv-moved/dst.txt'), 'move me');
    await rejectsWith(box.fs.moveFiles('/workspace/mv/none', '/workspace/x'), DaytonaNotFoundError);
  });

  test('setFilePermissions: mode, owner, group', async () => {
    await box.fs.uploadFile(Buffer.from('#!/bin/sh\necho run\n'), '/workspace/perm.sh');
    await box.fs.setFilePermissions('/workspace/perm.sh', { mode: '755' });
    assert.equal((await box.fs.getFileDetails('/workspace/perm.sh')).permissions, '0755');
    assert.equal(await sh('/workspace/perm.sh'), 'run\n');
    await box.fs.setFilePermissions('/workspace/perm.sh', { owner: 'nobody', group: 'nogroup', mode: '640' });
    const info = await box.fs.getFileDetails('/workspace/perm.sh');
    assert.deepEqual([info.owner, info.group, info.permissions, info.mode], ['nobody', 'nogroup', '0640', '-rw-r-----']);
    await rejectsWith(box.fs.setFilePermissions('/workspace/none', { mode: '644' }), DaytonaFileNotFoundError);
  });
});

describe('find, search, replace', () => {
  before(async () => {
    await box.fs.uploadFiles([
      { source: Buffer.from('def main():\n    print("TODO: hello")\n'), destination: '/workspace/proj/src/main.py' },
      { source: Buffer.from('# TODO later\nx = 1\n'), destination: '/workspace/proj/src/util.py' },
      { source: Buffer.from('nothing here\n'), destination: '/workspace/proj/README.md' },
      { source: Buffer.from('const a = "TODO";\n'), destination: '/workspace/proj/web/app.ts' },
    ]);
  });

  test('findFiles greps contents', async () => {
    const matches = await box.fs.findFiles('/workspace/proj', 'TODO');
    const got = matches.map((m) => [m.file, m.line, m.content]).sort();
    assert.deepEqual(got, [
      ['/workspace/proj/src/main.py', 2, '    print("TODO: hello")'],
      ['/workspace/proj/src/util.py', 1, '# TODO later'],
      ['/workspace/proj/web/app.ts', 1, 'const a = "TODO";'],
    ]);
    assert.deepEqual(await box.fs.findFiles('/workspace/proj', 'no such text anywhere'), []);
  });

  test('searchFiles globs names', async () => {
    const py = await box.fs.searchFiles('/workspace/proj', '*.py');
    assert.deepEqual([...py.files].sort(), ['/workspace/proj/src/main.py', '/workspace/proj/src/util.py']);
    const md = await box.fs.searchFiles('/workspace/proj', '*.md');
    assert.deepEqual(md.files, ['/workspace/proj/README.md']);
    assert.deepEqual((await box.fs.searchFiles('/workspace/proj', '*.rs')).files, []);
  });

  test('replaceInFiles', async () => {
    const res = await box.fs.replaceInFiles(
      ['/workspace/proj/src/main.py', '/workspace/proj/src/util.py', '/workspace/proj/missing.py'],
      'TODO',
      'DONE',
    );
    assert.equal(res.length, 3);
    assert.deepEqual(
      res.slice(0, 2).map((r) => [r.file, r.success]),
      [
        ['/workspace/proj/src/main.py', true],
        ['/workspace/proj/src/util.py', true],
      ],
    );
    assert.equal(res[2].success, false);
    assert.ok(res[2].error);
    assert.equal(await sh('cat /workspace/proj/src/util.py'), '# DONE later\nx = 1\n');
    assert.deepEqual(
      (await box.fs.findFiles('/workspace/proj', 'TODO')).map((m) => m.file),
      ['/workspace/proj/web/app.ts'],
    );
  });
});

describe('errors', () => {
  test('a toolbox call on a stopped sandbox is DaytonaConflictError', async () => {
    const stopped = await createBox({ snapshot: 'busybox' });
    await stopped.stop();
    const e = await rejectsWith(stopped.fs.listFiles('/'), DaytonaConflictError, { statusCode: 409 });
    assert.ok(e instanceof DaytonaError);
    await stopped.delete();
  });
});

// sandbox.git through the Daytona TypeScript SDK.
//
// Local repositories (init, add, commit, status, branches, reset/restore, config, and clone/push/pull between
// repositories inside the sandbox through a path URL) need only the server's /git/ routes and the image's git.
// Remotes over HTTP with credentials need a git server inside the sandbox: tests/e2e/git_server.py.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import {
  DaytonaBadRequestError,
  DaytonaGitBranchExistsError,
  DaytonaGitAuthFailedError,
  DaytonaGitBranchNotFoundError,
  DaytonaGitMergeConflictError,
  DaytonaGitPushRejectedError,
  DaytonaGitRepoNotFoundError,
  DaytonaNotFoundError,
  DaytonaUnprocessableEntityError,
} from '@daytonaio/sdk';
import { createBox, rejectsWith } from './helpers.mjs';

const GIT_SERVER = fileURLToPath(new URL('../git_server.py', import.meta.url));

const box = await createBox();

/** Whether the server has the /git/ routes: without them any git call is the router's generic 404 NOT_FOUND. */
async function hasGitRoutes() {
  try {
    await box.git.branches('/no/such/repo');
    return true;
  } catch (e) {
    return !(e instanceof DaytonaNotFoundError && e.code === 'NOT_FOUND');
  }
}

const NO_ROUTES = (await hasGitRoutes())
  ? false
  : 'the server has no /api/toolbox/{id}/git/... routes (sandburg/server/routers/git.py): git is skipped';
const NO_SERVER =
  NO_ROUTES ||
  (existsSync(GIT_SERVER)
    ? false
    : 'tests/e2e/git_server.py does not exist (no git server to run inside the sandbox): remote git is skipped');

const AUTHOR = ['Ada Lovelace', 'ada@example.com'];

const sh = async (cmd) => {
  const r = await box.process.executeCommand(cmd);
  assert.equal(r.exitCode, 0, `${cmd}: ${r.result}`);
  return r.result;
};

describe('git: local repositories', { skip: NO_ROUTES }, () => {
  const repo = '/workspace/repo';

  test('init, status, add, commit, branches', async () => {
    await box.git.init(repo, false, 'main');
    let st = await box.git.status(repo);
    assert.equal(st.currentBranch, 'main');
    assert.deepEqual(st.fileStatus, []);

    await box.fs.uploadFiles([
      { source: Buffer.from('one\n'), destination: `${repo}/a.txt` },
      { source: Buffer.from('two\n'), destination: `${repo}/dir/b.txt` },
    ]);
    st = await box.git.status(repo);
    const untracked = st.fileStatus.map((f) => [f.name, f.worktree]).sort();
    assert.ok(untracked.length >= 1, JSON.stringify(st));
    assert.ok(st.fileStatus.every((f) => f.worktree === 'Untracked'), JSON.stringify(st.fileStatus));

    await box.git.add(repo, ['a.txt', 'dir']);
    st = await box.git.status(repo);
    assert.deepEqual(
      st.fileStatus.map((f) => [f.name, f.staging]).sort(),
      [
        ['a.txt', 'Added'],
        ['dir/b.txt', 'Added'],
      ],
    );

    const { sha } = await box.git.commit(repo, 'first commit', ...AUTHOR);
    assert.match(sha, /^[0-9a-f]{40}$/);
    assert.equal(await sh(`git -C ${repo} rev-parse HEAD`), `${sha}\n`);
    assert.equal(await sh(`git -C ${repo} log -1 --format='%an <%ae> %s'`), 'Ada Lovelace <ada@example.com> first commit\n');
    st = await box.git.status(repo);
    assert.deepEqual(st.fileStatus, []);

    const branches = await box.git.branches(repo);
    assert.deepEqual(branches.branches, ['main']);

    // nothing staged: an error unless allowEmpty
    await rejectsWith(box.git.commit(repo, 'empty', ...AUTHOR), DaytonaBadRequestError, { statusCode: 400 });
    const empty = await box.git.commit(repo, 'empty', ...AUTHOR, true);
    assert.notEqual(empty.sha, sha);
  });

  test('createBranch, checkoutBranch, deleteBranch and their typed errors', async () => {
    await box.git.createBranch(repo, 'feature');
    assert.equal((await box.git.status(repo)).currentBranch, 'feature', 'createBranch checks the branch out');
    assert.deepEqual((await box.git.branches(repo)).branches, ['feature', 'main']);
    await rejectsWith(box.git.createBranch(repo, 'main'), DaytonaGitBranchExistsError, {
      statusCode: 409,
      code: 'GIT_BRANCH_EXISTS',
    });

    await box.git.checkoutBranch(repo, 'main');
    assert.equal((await box.git.status(repo)).currentBranch, 'main');
    await rejectsWith(box.git.checkoutBranch(repo, 'no-such-branch'), DaytonaGitBranchNotFoundError, {
      statusCode: 404,
    });

    await box.git.deleteBranch(repo, 'feature');
    assert.deepEqual((await box.git.branches(repo)).branches, ['main']);
    await rejectsWith(box.git.deleteBranch(repo, 'feature'), DaytonaGitBranchNotFoundError);
  });

  test('restore and reset', async () => {
    await box.fs.uploadFile(Buffer.from('changed\n'), `${repo}/a.txt`);
    assert.equal((await box.git.status(repo)).fileStatus[0]?.worktree, 'Modified');
    await box.git.restore(repo, ['a.txt']);
    assert.equal(await sh(`cat ${repo}/a.txt`), 'one\n');

    await box.fs.uploadFile(Buffer.from('staged\n'), `${repo}/a.txt`);
    await box.git.add(repo, ['a.txt']);
    assert.equal((await box.git.status(repo)).fileStatus[0]?.staging, 'Modified');
    await box.git.reset(repo, undefined, undefined, ['a.txt']);
    const st = await box.git.status(repo);
    assert.equal(st.fileStatus[0]?.staging, 'Unmodified');
    assert.equal(st.fileStatus[0]?.worktree, 'Modified');
    await box.git.reset(repo, 'hard');
    assert.deepEqual((await box.git.status(repo)).fileStatus, []);
    assert.equal(await sh(`cat ${repo}/a.txt`), 'one\n');
  });

  test('a bare origin in the sandbox: remoteAdd, push, clone, pull', async () => {
    const origin = '/srv/origin.git';
    await box.git.init(origin, true, 'main');
    await box.git.remoteAdd(repo, 'origin', origin);
    assert.deepEqual((await box.git.remotes(repo)).remotes, [{ name: 'origin', url: origin }]);
    assert.equal(await box.git.remoteGet(repo, 'origin'), origin);
    await box.git.push(repo, undefined, undefined, 'main', 'origin', true);
    const st = await box.git.status(repo);
    assert.equal(st.ahead ?? 0, 0);

    const clone = '/workspace/clone';
    await box.git.clone(origin, clone);
    assert.equal(await sh(`cat ${clone}/a.txt ${clone}/dir/b.txt`), 'one\ntwo\n');
    assert.equal((await box.git.status(clone)).currentBranch, 'main');

    await box.fs.uploadFile(Buffer.from('from the clone\n'), `${clone}/c.txt`);
    await box.git.add(clone, ['.']);
    const { sha } = await box.git.commit(clone, 'second', ...AUTHOR);
    await box.git.push(clone);

    await box.git.pull(repo);
    assert.equal(await sh(`git -C ${repo} rev-parse HEAD`), `${sha}\n`);
    assert.equal(await sh(`cat ${repo}/c.txt`), 'from the clone\n');

    // a shallow clone of one branch (git ignores --depth for a plain path: a file:// URL)
    await box.git.clone(`file://${origin}`, '/workspace/shallow', 'main', undefined, undefined, undefined, undefined, 1);
    assert.equal(await sh('git -C /workspace/shallow rev-list --count HEAD'), '1\n');

    await rejectsWith(box.git.clone('/srv/no-such-repo.git', '/workspace/none'), DaytonaGitRepoNotFoundError, {
      statusCode: 404,
    });
  });

  test('config: setConfig, getConfig, configureUser', async () => {
    await box.git.setConfig('core.autocrlf', 'input');
    assert.equal(await box.git.getConfig('core.autocrlf'), 'input');
    assert.equal(await box.git.getConfig('sandburg.unset'), null);
    await box.git.configureUser('Grace Hopper', 'grace@example.com', 'local', repo);
    assert.equal(await box.git.getConfig('user.name', 'local', repo), 'Grace Hopper');
    assert.equal(await sh(`git -C ${repo} config user.email`), 'grace@example.com\n');
  });

  test('a path that is not a repository: DaytonaGitRepoNotFoundError', async () => {
    await sh('mkdir -p /workspace/plain');
    for (const call of [
      () => box.git.status('/workspace/plain'),
      () => box.git.add('/workspace/plain', ['x']),
      () => box.git.branches('/workspace/missing'),
    ]) {
      await rejectsWith(call(), DaytonaGitRepoNotFoundError, {
        statusCode: 404,
        code: 'GIT_REPO_NOT_FOUND',
        source: 'DAYTONA_DAEMON',
      });
    }
  });

  test('an image without git: a typed 422 that says so', async () => {
    const busybox = await createBox({ snapshot: 'busybox' });
    const e = await rejectsWith(busybox.git.status('/workspace'), DaytonaUnprocessableEntityError, { statusCode: 422 });
    assert.match(e.message, /git is not installed/);
    await busybox.delete();
  });
});

describe('git: remotes over HTTP with credentials', { skip: NO_SERVER }, () => {
  // tests/e2e/git_server.py runs inside the sandbox: smart HTTP on its loopback, basic auth USER:PASSWORD only
  const PORT = 8418;
  const [USER, PASSWORD] = ['git-user', 'pa55:w0rd'];
  const base = `http://127.0.0.1:${PORT}`;
  const sid = 'git-http';

  test('start the git server in the sandbox', async () => {
    await box.fs.uploadFile(GIT_SERVER, '/opt/git_server.py');
    await sh(
      'mkdir -p /srv/git /tmp/seed && cd /tmp/seed && git init -q -b main && echo seed > README && git add README && ' +
        'git -c user.name=s -c user.email=s@s commit -qm seed && git clone -q --bare /tmp/seed /srv/git/proj.git',
    );
    await box.process.createSession(sid);
    const cmd = await box.process.executeSessionCommand(sid, {
      command: `exec python3 -u /opt/git_server.py /srv/git ${PORT} ${USER} '${PASSWORD}'`,
      runAsync: true,
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const logs = await box.process.getSessionCommandLogs(sid, cmd.cmdId);
      if (logs.stdout.includes('listening')) break;
      if (Date.now() > deadline) assert.fail(`git server did not start: ${JSON.stringify(logs)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  test('clone with username/password; the password is not stored in the clone', async () => {
    await box.git.clone(`${base}/proj.git`, '/workspace/http-a', undefined, undefined, USER, PASSWORD);
    assert.equal(await sh('cat /workspace/http-a/README'), 'seed\n');
    assert.equal(await box.git.remoteGet('/workspace/http-a', 'origin'), `${base}/proj.git`);
    const config = await sh('cat /workspace/http-a/.git/config; cat ~/.gitconfig ~/.git-credentials 2>/dev/null || true');
    assert.ok(!config.includes(PASSWORD), config);
  });

  test('push and pull with credentials', async () => {
    await box.fs.uploadFile(Buffer.from('pushed over http\n'), '/workspace/http-a/new.txt');
    await box.git.add('/workspace/http-a', ['new.txt']);
    const { sha } = await box.git.commit('/workspace/http-a', 'over http', ...AUTHOR);
    await box.git.push('/workspace/http-a', USER, PASSWORD);
    assert.equal(await sh('git --git-dir=/srv/git/proj.git rev-parse main'), `${sha}\n`);

    await box.git.clone(`${base}/proj.git`, '/workspace/http-b', 'main', undefined, USER, PASSWORD);
    await box.fs.uploadFile(Buffer.from('from b\n'), '/workspace/http-b/b.txt');
    await box.git.add('/workspace/http-b', ['b.txt']);
    const second = await box.git.commit('/workspace/http-b', 'from b', ...AUTHOR);
    await box.git.push('/workspace/http-b', USER, PASSWORD, 'main', 'origin');

    await box.git.pull('/workspace/http-a', USER, PASSWORD);
    assert.equal(await sh('git -C /workspace/http-a rev-parse HEAD'), `${second.sha}\n`);
    assert.equal(await sh('cat /workspace/http-a/b.txt'), 'from b\n');
    const st = await box.git.status('/workspace/http-a');
    assert.equal(st.currentBranch, 'main');
    assert.equal(st.ahead ?? 0, 0);
    assert.equal(st.behind ?? 0, 0);
  });

  test('typed errors: wrong or missing credentials, unknown repository, rejected push', async () => {
    const wrong = await rejectsWith(
      box.git.clone(`${base}/proj.git`, '/workspace/http-x', undefined, undefined, USER, 'wrong'),
      DaytonaGitAuthFailedError,
      { statusCode: 401, code: 'GIT_AUTH_FAILED', source: 'DAYTONA_DAEMON' },
    );
    assert.ok(!wrong.message.includes('wrong'), `the password is not echoed: ${wrong.message}`);
    await rejectsWith(box.git.clone(`${base}/proj.git`, '/workspace/http-y'), DaytonaGitAuthFailedError);
    await rejectsWith(box.git.pull('/workspace/http-a'), DaytonaGitAuthFailedError);
    await rejectsWith(
      box.git.clone(`${base}/nope.git`, '/workspace/http-z', undefined, undefined, USER, PASSWORD),
      DaytonaGitRepoNotFoundError,
      { statusCode: 404 },
    );
    // make http-b diverge from the remote (drop its pushed commit, commit something else), then push: rejected
    await sh('cd /workspace/http-b && git reset -q --hard HEAD~1 && echo diverged > d.txt && git add d.txt && ' +
      'git -c user.name=x -c user.email=x@x commit -qm diverged');
    await rejectsWith(box.git.push('/workspace/http-b', USER, PASSWORD), DaytonaGitPushRejectedError, {
      statusCode: 409,
      code: 'GIT_PUSH_REJECTED',
    });
    // change b.txt, which the remote also added: the pull's merge conflicts
    await sh('cd /workspace/http-b && echo conflict > b.txt && git add b.txt && git -c user.name=x -c user.email=x@x commit -qm c');
    await box.git.configureUser('X', 'x@example.com', 'local', '/workspace/http-b'); // the merge's identity
    await rejectsWith(box.git.pull('/workspace/http-b', USER, PASSWORD), DaytonaGitMergeConflictError, { statusCode: 409 });
  });

  test('dangerouslyAuthenticate stores the credentials for later commands', async () => {
    await box.git.dangerouslyAuthenticate(USER, PASSWORD, `127.0.0.1:${PORT}`, 'http');
    await box.git.clone(`${base}/proj.git`, '/workspace/http-c');
    assert.equal(await sh('cat /workspace/http-c/new.txt'), 'pushed over http\n');
    await box.process.deleteSession(sid);
  });
});

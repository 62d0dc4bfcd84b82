// Sessions through the Daytona TypeScript SDK: create, execute sync and async, commands, logs, follow, delete.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  DaytonaCommandAlreadyCompletedError,
  DaytonaConflictError,
  DaytonaGoneError,
  DaytonaNotFoundError,
  DaytonaSessionEndedError,
} from '@daytonaio/sdk';
import { createBox, rejectsWith, sleep, uniqueName } from './helpers.mjs';

let box;
before(async () => {
  box = await createBox();
});

async function waitForExit(sid, cmdId, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const cmd = await box.process.getSessionCommand(sid, cmdId);
    if (cmd.exitCode !== null && cmd.exitCode !== undefined) return cmd;
    if (Date.now() > deadline) throw new Error(`command ${cmdId} still running after ${timeoutMs} ms`);
    await sleep(100);
  }
}

describe('sessions', () => {
  test('create, execute synchronously, state persists between commands, get, list, delete', async () => {
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    await rejectsWith(box.process.createSession(sid), DaytonaConflictError, { statusCode: 409 });

    const first = await box.process.executeSessionCommand(sid, {
      command: 'export X=7; cd /tmp; echo out; echo err >&2',
    });
    assert.equal(first.exitCode, 0);
    assert.equal(first.stdout, 'out\n');
    assert.equal(first.stderr, 'err\n');
    assert.equal(first.output, 'out\nerr\n');
    assert.ok(first.cmdId);

    const second = await box.process.executeSessionCommand(sid, { command: 'echo "$X $(pwd)"; false' });
    assert.equal(second.exitCode, 1);
    assert.equal(second.stdout, '7 /tmp\n');
    assert.equal(second.stderr, '');

    const session = await box.process.getSession(sid);
    assert.equal(session.sessionId, sid);
    assert.deepEqual(
      session.commands.map((c) => [c.id, c.exitCode]),
      [
        [first.cmdId, 0],
        [second.cmdId, 1],
      ],
    );
    assert.equal(session.commands[0].command, 'export X=7; cd /tmp; echo out; echo err >&2');

    const cmd = await box.process.getSessionCommand(sid, second.cmdId);
    assert.equal(cmd.id, second.cmdId);
    assert.equal(cmd.exitCode, 1);

    const logs = await box.process.getSessionCommandLogs(sid, first.cmdId);
    assert.deepEqual(logs.stdout, 'out\n');
    assert.deepEqual(logs.stderr, 'err\n');
    assert.deepEqual(logs.output, 'out\nerr\n');

    assert.ok((await box.process.listSessions()).some((s) => s.sessionId === sid));

    await box.process.deleteSession(sid);
    await rejectsWith(box.process.getSession(sid), DaytonaNotFoundError, { statusCode: 404 });
    assert.ok(!(await box.process.listSessions()).some((s) => s.sessionId === sid));
    await rejectsWith(box.process.executeSessionCommand(sid, { command: 'true' }), DaytonaNotFoundError);
  });

  test('async command: cmdId at once, exitCode null while running, logs, follow through callbacks', async () => {
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    const started = Date.now();
    const res = await box.process.executeSessionCommand(sid, {
      command: 'for i in 1 2 3; do echo o$i; echo e$i >&2; sleep 0.3; done; exit 4',
      runAsync: true,
    });
    assert.ok(Date.now() - started < 800, 'runAsync answers before the command ends');
    assert.ok(res.cmdId);
    assert.ok(res.exitCode === undefined || res.exitCode === null, `exitCode ${res.exitCode}`);

    const running = await box.process.getSessionCommand(sid, res.cmdId);
    assert.ok(running.exitCode === undefined || running.exitCode === null);
    assert.match(running.command, /^for i in 1 2 3/);

    // follow: the SDK opens a WebSocket and demultiplexes stdout/stderr into the callbacks until the command ends
    const out = [];
    const err = [];
    await box.process.getSessionCommandLogs(
      sid,
      res.cmdId,
      (chunk) => out.push(chunk),
      (chunk) => err.push(chunk),
    );
    assert.equal(out.join(''), 'o1\no2\no3\n');
    assert.equal(err.join(''), 'e1\ne2\ne3\n');
    assert.ok(out.length >= 2, `output arrived as it happened, got ${JSON.stringify(out)}`);

    const done = await waitForExit(sid, res.cmdId);
    assert.equal(done.exitCode, 4);
    const logs = await box.process.getSessionCommandLogs(sid, res.cmdId);
    assert.equal(logs.stdout, 'o1\no2\no3\n');
    assert.equal(logs.stderr, 'e1\ne2\ne3\n');
    assert.equal(logs.output.split('\n').sort().join('\n'), '\ne1\ne2\ne3\no1\no2\no3');

    // following a finished command replays its output and ends
    const replay = [];
    await box.process.getSessionCommandLogs(sid, res.cmdId, (c) => replay.push(c), (c) => replay.push(c));
    assert.equal(replay.join('').length, 'o1\no2\no3\ne1\ne2\ne3\n'.length);
    await box.process.deleteSession(sid);
  });

  test('the deprecated `async` flag runs in the background too', async () => {
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    const res = await box.process.executeSessionCommand(sid, { command: 'sleep 0.2; echo late', async: true });
    assert.ok(res.exitCode === undefined || res.exitCode === null);
    const done = await waitForExit(sid, res.cmdId);
    assert.equal(done.exitCode, 0);
    assert.equal((await box.process.getSessionCommandLogs(sid, res.cmdId)).stdout, 'late\n');
    await box.process.deleteSession(sid);
  });

  test('input to a running command; input after it ended is refused', async () => {
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    const res = await box.process.executeSessionCommand(sid, {
      command: 'read a; read b; echo "got $a and $b"',
      runAsync: true,
    });
    await box.process.sendSessionCommandInput(sid, res.cmdId, 'one\n');
    await box.process.sendSessionCommandInput(sid, res.cmdId, 'two\n');
    const done = await waitForExit(sid, res.cmdId);
    assert.equal(done.exitCode, 0);
    assert.equal((await box.process.getSessionCommandLogs(sid, res.cmdId)).stdout, 'got one and two\n');
    const e = await rejectsWith(
      box.process.sendSessionCommandInput(sid, res.cmdId, 'three\n'),
      DaytonaCommandAlreadyCompletedError,
      { statusCode: 410, code: 'COMMAND_ALREADY_COMPLETED', source: 'DAYTONA_DAEMON' },
    );
    assert.ok(e instanceof DaytonaGoneError);
    await box.process.deleteSession(sid);
  });

  test('`exit` ends the session: DaytonaSessionEndedError afterwards', async () => {
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    await box.process.executeSessionCommand(sid, { command: 'exit 0' }).catch(() => {});
    await rejectsWith(
      box.process.executeSessionCommand(sid, { command: 'echo after' }),
      DaytonaSessionEndedError,
      { statusCode: 410, code: 'SESSION_ENDED', source: 'DAYTONA_DAEMON' },
    );
    await box.process.deleteSession(sid);
  });

  test('unknown session and command ids are DaytonaNotFoundError', async () => {
    await rejectsWith(box.process.getSession('no-such-session'), DaytonaNotFoundError, { statusCode: 404 });
    const sid = uniqueName('s');
    await box.process.createSession(sid);
    await rejectsWith(box.process.getSessionCommand(sid, 'no-such-command'), DaytonaNotFoundError);
    await rejectsWith(box.process.getSessionCommandLogs(sid, 'no-such-command'), DaytonaNotFoundError);
    await box.process.deleteSession(sid);
    await rejectsWith(box.process.deleteSession(sid), DaytonaNotFoundError);
  });
});

// Sandbox lifecycle through the Daytona TypeScript SDK: create, get, list, start/stop/delete, labels.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DaytonaError, DaytonaNotFoundError, Image, Sandbox } from '@daytonaio/sdk';
import { createBox, daytona, IMAGE, rejectsWith, requests, RUN_LABELS, uniqueName } from './helpers.mjs';

/** Runs `fn` while counting Sandbox.waitUntilStarted calls and the requests the SDK sends. */
async function observe(fn) {
  const orig = Sandbox.prototype.waitUntilStarted;
  let waits = 0;
  Sandbox.prototype.waitUntilStarted = function (...a) {
    waits++;
    return orig.apply(this, a);
  };
  const first = requests.length;
  try {
    const result = await fn();
    return { result, waits, sent: requests.slice(first) };
  } finally {
    Sandbox.prototype.waitUntilStarted = orig;
  }
}

describe('create', () => {
  test('default create answers started: one POST, no polling', async () => {
    const { result: box, sent } = await observe(() => createBox({ snapshot: undefined }));
    assert.equal(box.state, 'started');
    // exactly one request: POST /sandbox; no GET /sandbox/{id} polls, no toolbox-proxy-url lookup
    assert.deepEqual(sent, [{ method: 'POST', url: '/api/sandbox' }]);
    assert.match(box.id, /^[0-9a-f-]{36}$/);
    assert.equal(box.snapshot, IMAGE, 'the server default image is debian-12');
    assert.equal(box.labels['code-toolbox-language'], 'python', 'the SDK sets its language label');
    assert.equal(box.labels['sandburg-e2e'], 'daytona-ts');
    assert.equal(box.user, 'root');
    assert.equal(box.target, 'local');
    assert.ok(box.toolboxProxyUrl.endsWith('/api/toolbox'), box.toolboxProxyUrl);
    assert.ok(box.cpu >= 1 && box.memory >= 1 && box.disk >= 1);
    assert.equal(box.gpu, 0);
    if (process.env.SANDBURG_TS_ISOLATION) {
      // sandburg's own field, outside Daytona's DTO: read it raw to see which tier the server's default gave
      const raw = await fetch(`${process.env.DAYTONA_API_URL}/sandbox/${box.id}`, {
        headers: { Authorization: `Bearer ${process.env.DAYTONA_API_KEY}` },
      }).then((res) => res.json());
      assert.equal(raw.isolation, process.env.SANDBURG_TS_ISOLATION);
    }
    const r = await box.process.executeCommand('cat /etc/debian_version && command -v python3');
    assert.equal(r.exitCode, 0, r.result);
    assert.match(r.result, /^12\./);
  });

  test('snapshot name, env, labels, resources, autoStopInterval, network flags are sent and echoed', async () => {
    const name = uniqueName('ts-full');
    const { result: box, waits } = await observe(() =>
      createBox({
        name,
        snapshot: 'busybox',
        envVars: { GREETING: 'hello world', EMPTY: '' },
        labels: { team: 'sdk', 'with.dot': 'x' },
        resources: { cpu: 1, memory: 1, disk: 2 },
        autoStopInterval: 30,
        autoArchiveInterval: 60,
        public: false,
        networkBlockAll: true,
        networkAllowList: '10.0.0.0/8,192.168.0.0/16',
      }),
    );
    assert.equal(waits, 0, 'create must not wait for the started state');
    assert.equal(box.state, 'started');
    assert.equal(box.name, name);
    assert.equal(box.snapshot, 'busybox');
    assert.deepEqual(box.env, { GREETING: 'hello world', EMPTY: '' });
    assert.deepEqual(box.labels, { ...RUN_LABELS, team: 'sdk', 'with.dot': 'x', 'code-toolbox-language': 'python' });
    assert.deepEqual([box.cpu, box.memory, box.disk], [1, 1, 2]);
    assert.equal(box.autoStopInterval, 30);
    assert.equal(box.autoArchiveInterval, 60);
    assert.equal(box.public, false);
    assert.equal(box.networkBlockAll, true);
    assert.equal(box.networkAllowList, '10.0.0.0/8,192.168.0.0/16');
    // busybox has no bash: the env vars are still in the sandbox's environment
    const r = await box.process.executeCommand('echo "$GREETING|${EMPTY-unset}"; cat /etc/hostname');
    assert.equal(r.exitCode, 0, r.result);
    assert.equal(r.result.split('\n')[0], 'hello world|');
    // and a fresh get() says the same
    const again = await daytona.get(box.id);
    assert.deepEqual([again.cpu, again.memory, again.disk, again.autoStopInterval], [1, 1, 2, 30]);
    assert.equal(again.networkBlockAll, true);
  });

  test('image: "<name>" (the SDK sends buildInfo "FROM <name>") gives that image', async () => {
    const { result: box, sent } = await observe(() => createBox({ snapshot: undefined, image: 'busybox' }));
    assert.equal(sent.length, 1);
    assert.equal(box.state, 'started');
    assert.equal(box.snapshot, 'busybox');
    const r = await box.process.executeCommand('cat /etc/debian_version 2>/dev/null || busybox | head -1');
    assert.match(r.result, /^BusyBox/);
  });

  test('an Image built by the SDK (Image.base(...).runCommands) is built, then run', async () => {
    const name = uniqueName('ts-img');
    const box = await createBox(
      { name, snapshot: undefined, image: Image.base(IMAGE).runCommands('echo built > /built') },
      { timeout: 300 },
    );
    assert.equal(box.state, 'started');
    assert.equal((await box.process.executeCommand('cat /built')).result, 'built\n');
  });
});

describe('get and list', () => {
  test('get by id and by name', async () => {
    const name = uniqueName('ts-get');
    const box = await createBox({ name, snapshot: 'busybox' });
    const byId = await daytona.get(box.id);
    const byName = await daytona.get(name);
    for (const got of [byId, byName]) {
      assert.ok(got instanceof Sandbox);
      assert.equal(got.id, box.id);
      assert.equal(got.name, name);
      assert.equal(got.state, 'started');
      assert.equal(got.toolboxProxyUrl, box.toolboxProxyUrl);
    }
    // a Sandbox from get() drives the toolbox like the one from create()
    assert.equal((await byName.process.executeCommand('echo via-name')).result, 'via-name\n');
  });

  test('list filters by labels and follows nextCursor across pages', async () => {
    const group = uniqueName('grp');
    const boxes = [];
    for (let i = 0; i < 3; i++) boxes.push(await createBox({ snapshot: 'busybox', labels: { group, idx: String(i) } }));
    const other = await createBox({ snapshot: 'busybox', labels: { group: `${group}-other` } });

    const first = requests.length;
    const seen = [];
    for await (const sb of daytona.list({ labels: { group }, limit: 1 })) {
      assert.ok(sb instanceof Sandbox);
      seen.push(sb);
    }
    const pages = requests.slice(first).filter((r) => r.method === 'GET' && r.url === '/api/sandbox');
    assert.deepEqual(seen.map((s) => s.id), boxes.map((b) => b.id), 'oldest first, every page');
    assert.equal(pages.length, 3, 'one request per page of 1, none after the last');
    assert.ok(!seen.some((s) => s.id === other.id));
    assert.equal(seen[1].labels.idx, '1');
    assert.equal(seen[0].state, 'started');

    // two labels must both match
    const one = [];
    for await (const sb of daytona.list({ labels: { group, idx: '2' } })) one.push(sb.id);
    assert.deepEqual(one, [boxes[2].id]);

    // a default page size lists all of them in one request
    const firstAll = requests.length;
    const all = [];
    for await (const sb of daytona.list({ labels: RUN_LABELS })) all.push(sb.id);
    for (const b of [...boxes, other]) assert.ok(all.includes(b.id));
    assert.equal(requests.slice(firstAll).length, 1);

    // by name
    const named = [];
    for await (const sb of daytona.list({ name: other.name })) named.push(sb.id);
    assert.deepEqual(named, [other.id]);

    // states
    const stopped = [];
    for await (const sb of daytona.list({ labels: { group }, states: ['stopped'] })) stopped.push(sb.id);
    assert.deepEqual(stopped, []);
  });
});

describe('start, stop, delete, labels', () => {
  test('stop keeps the files, start brings the sandbox back, delete removes it', async () => {
    const box = await createBox({ snapshot: 'busybox' });
    await box.process.executeCommand('echo kept > /workspace/f');

    await box.stop();
    assert.equal(box.state, 'stopped');
    assert.equal((await daytona.get(box.id)).state, 'stopped');
    await box.stop(); // stopping a stopped sandbox is a no-op
    assert.equal(box.state, 'stopped');

    const { waits } = await observe(() => box.start());
    assert.equal(box.state, 'started');
    assert.equal(waits, 1, 'start() calls waitUntilStarted once');
    const r = await box.process.executeCommand('cat /workspace/f');
    assert.equal(r.result, 'kept\n');

    // the client-level helpers go through the same calls
    await daytona.stop(box);
    assert.equal(box.state, 'stopped');
    await daytona.start(box);
    assert.equal(box.state, 'started');

    await box.delete();
    assert.equal(box.state, 'destroyed');
    await rejectsWith(daytona.get(box.id), DaytonaNotFoundError, { statusCode: 404 });
    await rejectsWith(box.delete(), DaytonaNotFoundError);
  });

  test('delete with wait=true returns once it is gone', async () => {
    const box = await createBox({ snapshot: 'busybox' });
    await daytona.delete(box, 60, true);
    await rejectsWith(daytona.get(box.name), DaytonaNotFoundError);
  });

  test('setLabels replaces the labels', async () => {
    const box = await createBox({ snapshot: 'busybox', labels: { old: '1' } });
    const labels = { ...RUN_LABELS, 'code-toolbox-language': 'python', fresh: 'yes', 'a/b': 'c d' };
    const answered = await box.setLabels(labels);
    assert.deepEqual(answered, labels);
    assert.deepEqual(box.labels, labels);
    assert.deepEqual((await daytona.get(box.id)).labels, labels);
    const found = [];
    for await (const sb of daytona.list({ labels: { fresh: 'yes', ...RUN_LABELS } })) found.push(sb.id);
    assert.deepEqual(found, [box.id]);
    for await (const sb of daytona.list({ labels: { old: '1', ...RUN_LABELS } })) assert.notEqual(sb.id, box.id);
  });
});

describe('client configuration', () => {
  test('DAYTONA_API_URL and DAYTONA_API_KEY are what the client uses', () => {
    assert.equal(daytona.apiUrl, process.env.DAYTONA_API_URL);
    assert.equal(daytona.apiKey, process.env.DAYTONA_API_KEY);
  });
});

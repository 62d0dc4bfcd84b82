// process.executeCommand and process.codeRun through the Daytona TypeScript SDK.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import {
  DaytonaBadRequestError,
  DaytonaFileNotFoundError,
  DaytonaInvalidArgumentError,
  DaytonaNotFoundError,
  DaytonaProcessExecutionTimeoutError,
  DaytonaTimeoutError,
} from '@daytonaio/sdk';
import { createBox, daytona, rejectsWith } from './helpers.mjs';

let box;
before(async () => {
  box = await createBox({ envVars: { FROM_CREATE: 'c' } });
});

describe('executeCommand', () => {
  test('output, exit code, stderr folded into result', async () => {
    const r = await box.process.executeCommand('echo out; echo err >&2; exit 3');
    assert.equal(r.exitCode, 3);
    assert.match(r.result, /^out\n/);
    assert.match(r.result, /err\n/);
    assert.equal(r.artifacts.stdout, r.result);
  });

  test('the command string is passed to the shell verbatim', async () => {
    const r = await box.process.executeCommand(`printf '%s|' 'a b' "c  d" $((6*7)) "$FROM_CREATE"; echo`);
    assert.equal(r.exitCode, 0, r.result);
    assert.equal(r.result, 'a b|c  d|42|c|\n');
  });

  test('default working directory and cwd', async () => {
    assert.equal((await box.process.executeCommand('pwd')).result, '/workspace\n');
    await box.process.executeCommand('mkdir -p /tmp/wd/sub');
    assert.equal((await box.process.executeCommand('pwd', '/tmp/wd/sub')).result, '/tmp/wd/sub\n');
    await rejectsWith(box.process.executeCommand('pwd', '/does/not/exist'), DaytonaFileNotFoundError, {
      statusCode: 404,
      code: 'FILE_NOT_FOUND',
    });
  });

  test('env adds to the sandbox environment for one command', async () => {
    const r = await box.process.executeCommand('echo "$A|$B|$FROM_CREATE"', undefined, { A: '1', B: 'two words' });
    assert.equal(r.result, '1|two words|c\n');
    assert.equal((await box.process.executeCommand('echo "${A-unset}"')).result, 'unset\n');
  });

  test('timeout kills the command: DaytonaProcessExecutionTimeoutError', async () => {
    const started = Date.now();
    const e = await rejectsWith(
      box.process.executeCommand('sleep 30; echo never', undefined, undefined, 1),
      DaytonaProcessExecutionTimeoutError,
      { statusCode: 408, code: 'PROCESS_EXECUTION_TIMEOUT', source: 'DAYTONA_DAEMON' },
    );
    assert.ok(e instanceof DaytonaTimeoutError);
    assert.ok(Date.now() - started < 10_000, 'answered soon after the timeout');
    // and the sandbox is fine afterwards
    assert.equal((await box.process.executeCommand('echo ok', undefined, undefined, 5)).result, 'ok\n');
  });

  test(
    'timeout 0 means no server-side limit',
    async () => {
      const r = await box.process.executeCommand('echo unlimited', undefined, undefined, 0);
      assert.equal(r.result, 'unlimited\n');
    },
  );
});

describe('sandbox directories', () => {
  test('getUserHomeDir and getWorkDir', async () => {
    assert.equal(await box.getUserHomeDir(), '/root');
    assert.equal(await box.getWorkDir(), '/workspace');
  });
});

describe('codeRun', () => {
  // The SDK sends POST /process/code-run {code, language, argv?, envs?, timeout?} with the language from the
  // sandbox's code-toolbox-language label. A server without that route answers 404 NOT_FOUND: the SDK's typed
  // error is asserted and the test says so.
  async function codeRun(t, sandbox, code, params, timeout) {
    try {
      return await sandbox.process.codeRun(code, params, timeout);
    } catch (e) {
      if (e instanceof DaytonaNotFoundError && e.code === 'NOT_FOUND') {
        assert.equal(e.statusCode, 404);
        t.diagnostic(`server has no POST /process/code-run (404 ${e.code}: ${e.message})`);
        return undefined;
      }
      throw e;
    }
  }

  test('python (the default language): output, exit code, argv, env, timeout', async (t) => {
    const r = await codeRun(t, box, 'import sys\nprint(sum(range(10)), sys.version_info[0])');
    if (!r) return;
    assert.equal(r.exitCode, 0, r.result);
    assert.equal(r.result, '45 3\n');
    assert.equal(r.artifacts.stdout, r.result);
    assert.deepEqual(r.artifacts.charts, []);

    const failed = await box.process.codeRun('import sys\nprint("bye")\nsys.exit(5)');
    assert.equal(failed.exitCode, 5);
    assert.equal(failed.result, 'bye\n');

    const withArgs = await box.process.codeRun('import os, sys\nprint(sys.argv[1:], os.environ["K"], os.getcwd())', {
      argv: ['a', 'b c'],
      env: { K: 'v' },
    });
    assert.equal(withArgs.result, "['a', 'b c'] v /workspace\n");

    const started = Date.now();
    await rejectsWith(box.process.codeRun('import time\ntime.sleep(30)', undefined, 1), DaytonaProcessExecutionTimeoutError, {
      statusCode: 408,
    });
    assert.ok(Date.now() - started < 10_000);
  });

  test('bash, through the language label', async (t) => {
    // the SDK's create() only takes python/typescript/javascript, but the label is the sandbox's: set it, get() again
    const sandbox = await createBox();
    await sandbox.setLabels({ ...sandbox.labels, 'code-toolbox-language': 'bash' });
    const again = await daytona.get(sandbox.id);
    const r = await codeRun(t, again, 'echo $((6 * 7)) "$@"', { argv: ['x'] });
    if (!r) return;
    assert.equal(r.exitCode, 0, r.result);
    assert.equal(r.result, '42 x\n');
  });

  for (const language of ['typescript', 'javascript']) {
    test(`${language}: debian-12 has no node, a typed error says so`, async (t) => {
      const sandbox = await createBox({ language });
      assert.equal(sandbox.labels['code-toolbox-language'], language);
      let r;
      try {
        r = await codeRun(t, sandbox, language === 'typescript' ? 'const n: number = 42; console.log(n)' : 'console.log(42)');
      } catch (e) {
        assert.ok(e instanceof DaytonaBadRequestError, `${e.constructor.name}: ${e.message}`);
        assert.equal(e.statusCode, 400);
        assert.match(e.message, /node/);
        return;
      }
      if (r) assert.fail(`expected a missing-runtime error, got ${JSON.stringify(r)}`);
    });
  }

  test('a language the SDK does not know is refused before any request', async () => {
    await rejectsWith(daytona.create({ snapshot: 'busybox', language: 'bash' }), DaytonaInvalidArgumentError);
  });
});

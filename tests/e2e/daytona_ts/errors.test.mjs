// Server errors come out of the Daytona TypeScript SDK as its typed error classes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  Daytona,
  DaytonaAuthenticationError,
  DaytonaBadRequestError,
  DaytonaConflictError,
  DaytonaError,
  DaytonaInvalidArgumentError,
  DaytonaNotFoundError,
  DaytonaUnprocessableEntityError,
  DaytonaValidationError,
} from '@daytonaio/sdk';
import { createBox, daytona, rejectsWith, requests, uniqueName } from './helpers.mjs';

describe('errors', () => {
  test('unknown sandbox: DaytonaNotFoundError with the server message, status, code, headers', async () => {
    const e = await rejectsWith(daytona.get('no-such-sandbox'), DaytonaNotFoundError, {
      statusCode: 404,
      code: 'SANDBOX_NOT_FOUND',
    });
    assert.match(e.message, /no-such-sandbox/);
    assert.match(String(e.headers['content-type']), /^application\/json/);
    await rejectsWith(daytona.get('00000000-0000-4000-8000-000000000000'), DaytonaNotFoundError);
  });

  test('a wrong API key: DaytonaAuthenticationError', async () => {
    const bad = new Daytona({ apiUrl: process.env.DAYTONA_API_URL, apiKey: 'sb_wrong' });
    try {
      await rejectsWith(bad.get('anything'), DaytonaAuthenticationError, { statusCode: 401 });
      await rejectsWith(bad.create({ snapshot: 'busybox' }), DaytonaAuthenticationError);
      const page = bad.list();
      await rejectsWith(page.next(), DaytonaAuthenticationError);
    } finally {
      await bad[Symbol.asyncDispose]();
    }
  });

  test('no API key at all is refused by the client before any request', () => {
    const saved = process.env.DAYTONA_API_KEY;
    delete process.env.DAYTONA_API_KEY;
    try {
      assert.throws(() => new Daytona(), DaytonaAuthenticationError);
    } finally {
      process.env.DAYTONA_API_KEY = saved;
    }
  });

  test('a duplicate name: DaytonaConflictError, the first sandbox is untouched', async () => {
    const name = uniqueName('ts-dup');
    const box = await createBox({ name, snapshot: 'busybox' });
    await rejectsWith(createBox({ name, snapshot: 'busybox' }), DaytonaConflictError, { statusCode: 409 });
    assert.equal((await daytona.get(name)).id, box.id);
  });

  test('resources out of range: DaytonaUnprocessableEntityError, nothing created', async () => {
    const name = uniqueName('ts-big');
    const e = await rejectsWith(
      createBox({ name, snapshot: 'busybox', resources: { cpu: 4096 } }),
      DaytonaUnprocessableEntityError,
      { statusCode: 422, code: 'INVALID_RESOURCES' },
    );
    assert.match(e.message, /cpu/);
    await rejectsWith(daytona.get(name), DaytonaNotFoundError);
  });

  test('an unknown snapshot: DaytonaNotFoundError', async () => {
    const e = await rejectsWith(createBox({ snapshot: 'no-such-image' }), DaytonaNotFoundError, {
      statusCode: 404,
      code: 'IMAGE_NOT_FOUND',
    });
    assert.match(e.message, /no-such-image/);
  });

  test('an invalid name: DaytonaBadRequestError (DaytonaValidationError)', async () => {
    const e = await rejectsWith(createBox({ name: '-bad name!', snapshot: 'busybox' }), DaytonaBadRequestError, {
      statusCode: 400,
    });
    assert.ok(e instanceof DaytonaValidationError);
    assert.equal(typeof e.message, 'string');
    assert.ok(e.message.length > 0);
  });

  test('client-side validation sends nothing', async () => {
    const before = requests.length;
    await rejectsWith(daytona.create({ snapshot: 'busybox', autoStopInterval: -1 }), DaytonaInvalidArgumentError);
    await rejectsWith(daytona.create({ snapshot: 'busybox', language: 'cobol' }), DaytonaInvalidArgumentError);
    assert.equal(requests.length, before);
  });

  test('every error is a DaytonaError carrying the HTTP status', async () => {
    const e = await rejectsWith(daytona.get('missing-' + uniqueName('x')), DaytonaError);
    assert.equal(e.statusCode, 404);
    assert.equal(e.name, 'DaytonaNotFoundError');
  });
});

// Shared setup for the Daytona TypeScript SDK suite. The SDK is configured only through DAYTONA_API_URL and
// DAYTONA_API_KEY (tests/e2e/test_daytona_ts.py sets them); every sandbox gets the run's labels so the pytest
// wrapper can remove whatever a crashed test file left behind.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import { Daytona, DaytonaError, DaytonaNotFoundError } from '@daytonaio/sdk';

for (const name of ['DAYTONA_API_URL', 'DAYTONA_API_KEY']) {
  if (!process.env[name]) throw new Error(`${name} is not set: run this suite through tests/e2e/test_daytona_ts.py`);
}

export const RUN = process.env.SANDBURG_TS_RUN || `local-${process.pid}`;
export const RUN_LABELS = { 'sandburg-e2e': 'daytona-ts', 'sandburg-run': RUN };
export const IMAGE = 'debian-12';

// Every request the SDK's axios instances send (main API and toolbox), for asserting what went over the wire.
// Observation only: the interceptor returns the request unchanged.
export const requests = [];
const createAxiosInstance = Daytona.createAxiosInstance;
Daytona.createAxiosInstance = function (...args) {
  const ax = createAxiosInstance.apply(this, args);
  ax.interceptors.request.use((config) => {
    requests.push({ method: (config.method || 'get').toUpperCase(), url: new URL(config.url, config.baseURL).pathname });
    return config;
  });
  return ax;
};

export const daytona = new Daytona();
const made = [];

/** daytona.create() with the run's labels and debian-12 (unless given); deleted when the test file ends. */
export async function createBox(params = {}, options) {
  const box = await daytona.create(
    { snapshot: IMAGE, ...params, labels: { ...RUN_LABELS, ...(params.labels || {}) } },
    options,
  );
  made.push(box);
  return box;
}

after(async () => {
  for (const box of made) {
    try {
      await box.delete();
    } catch (e) {
      if (!(e instanceof DaytonaNotFoundError)) console.error(`cleanup of ${box.id} failed: ${e}`);
    }
  }
  await daytona[Symbol.asyncDispose]();
});

/** Asserts that `promise` rejects with an instance of `cls` (and the given fields), returns the error. */
export async function rejectsWith(promise, cls, fields = {}) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected ${cls.name}, but the call succeeded`);
  assert.ok(
    err instanceof cls,
    `expected ${cls.name}, got ${err?.constructor?.name}: ${err?.message} (status ${err?.statusCode}, code ${err?.code})`,
  );
  assert.ok(err instanceof DaytonaError || cls === Error, `${err?.constructor?.name} is not a DaytonaError`);
  for (const [k, v] of Object.entries(fields)) assert.deepEqual(err[k], v, `error.${k}: ${err.message}`);
  return err;
}

export function uniqueName(prefix) {
  return `${prefix}-${Math.random().toString(16).slice(2, 10)}`;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

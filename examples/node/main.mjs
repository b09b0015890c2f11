// Submit an `echo` job to jobgate, wait for it with long-polling, print the finished job.
//
//   JOBGATE_URL=http://127.0.0.1:8000 JOBGATE_API_KEY=jg_... node main.mjs "hello"
//
// Prints one line of JSON: {"id": ..., "status": ..., "result": ...}. Exit status 0 when the
// job succeeded, 1 when it ended otherwise, 2 when jobgate refused it or could not be reached.
import { createJobgateClient, JobgateError } from "@jobgate/client";

const WAIT_TIMEOUT_SECONDS = 30;

const apiKey = process.env.JOBGATE_API_KEY;
if (!apiKey) {
  console.error("Set JOBGATE_API_KEY to a tenant's API key (`make dev` prints one).");
  process.exit(2);
}
const jobgate = createJobgateClient({
  baseUrl: process.env.JOBGATE_URL ?? "http://127.0.0.1:8000",
  apiKey,
});

try {
  const message = process.argv[2] ?? "hello from Node.js";
  const submitted = await jobgate.submit("echo", { args: { message, repeat: 2 } });
  console.error(`submitted ${submitted.id} (${submitted.status}); waiting for it`);
  const job = await jobgate.waitFor(submitted.id, WAIT_TIMEOUT_SECONDS);
  console.log(JSON.stringify({ id: job.id, status: job.status, result: job.result }));
  process.exitCode = job.status === "succeeded" ? 0 : 1;
} catch (error) {
  // A JobgateError carries jobgate's problem+json (`error.problem`): type, title, detail.
  console.error(error instanceof JobgateError ? `jobgate refused: ${error.message}` : error);
  process.exitCode = 2;
}

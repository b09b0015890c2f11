// Compile-time checks (`npm run typecheck`): the client's types follow the OpenAPI document.
// Each `@ts-expect-error` fails the check if the line it marks stops being an error.
import {
  createJobgateClient,
  JobgateError,
  JobWaitTimeout,
  type Attempt,
  type Job,
  type JobArgs,
  type JobTypeName,
} from "../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(): T | undefined {
  return undefined;
}

// Every built-in type is there (others may be added); batches and workflows are not job types.
type BuiltIn = "echo" | "flaky" | "health_check" | "send_email" | "sleep" | "tenant_report";
expectType<Equal<Extract<JobTypeName, BuiltIn>, BuiltIn>>();
expectType<Equal<Extract<JobTypeName, `${string}_batch` | "workflow">, never>>();
expectType<Equal<JobArgs<"echo">, { message: string; repeat?: number }>>();
expectType<Equal<Job["status"], "scheduled" | "queued" | "running" | "retrying" | "succeeded" | "failed" | "cancelled" | "expired">>();
expectType<Equal<Job["start_by"], string | null>>();
expectType<Equal<Attempt["outcome"], "running" | "succeeded" | "retrying" | "failed" | "cancelled" | "lost">>();

export async function usage(): Promise<Job[]> {
  const jobgate = createJobgateClient({ baseUrl: "http://127.0.0.1:8000", apiKey: "jg_example" });
  const accepted = [
    await jobgate.submit("echo", { args: { message: "hi", repeat: 2 } }),
    await jobgate.submit("sleep", { args: { seconds: 1 }, options: { priority: "low" } }),
    await jobgate.submit("echo", { args: { message: "soon" }, options: { start_within_seconds: 60 } }),
    await jobgate.submit("health_check", { args: {} }, { idempotencyKey: "probe-1" }),
    await jobgate.get("0193", { wait: 30 }),
    await jobgate.waitFor("0193", 10),
  ];
  const attempts: Attempt[] = await jobgate.attempts("0193");
  const failures: (string | undefined)[] = attempts.map((attempt) => attempt.error?.type);
  console.log(failures, attempts[0]?.worker, attempts[0]?.duration_seconds);
  // @ts-expect-error: no job type of that name
  await jobgate.submit("no_such_type", { args: {} });
  // @ts-expect-error: a batch operation is not a job type
  await jobgate.submit("echo_batch", { args: { message: "hi" } });
  // @ts-expect-error: `message` is a string
  await jobgate.submit("echo", { args: { message: 42 } });
  // @ts-expect-error: `fail_times` is required
  await jobgate.submit("flaky", { args: {} });
  // @ts-expect-error: there is no `prio` option
  await jobgate.submit("echo", { args: { message: "hi" }, options: { prio: "low" } });
  // @ts-expect-error: priorities are `critical`, `default` or `low`
  await jobgate.submit("echo", { args: { message: "hi" }, options: { priority: "urgent" } });
  // A queue is one of the job type's own (`GET /job-types`: `queues`).
  await jobgate.submit("send_email", { args: { to: "a@example.com", subject: "s", body: "b" }, options: { queue: "email" } });
  // @ts-expect-error: `echo` runs on `default` only
  await jobgate.submit("echo", { args: { message: "hi" }, options: { queue: "email" } });
  // @ts-expect-error: seconds are numbers
  await jobgate.submit("echo", { args: { message: "hi" }, options: { delay_seconds: "30" } });
  // Every other operation, typed, through `raw` (as docs/clients.md shows).
  const failed = await jobgate.raw.GET("/jobs", { params: { query: { status: ["failed"] } } });
  accepted.push(...(failed.data?.items ?? []));
  // @ts-expect-error: `lost` is not a status
  await jobgate.raw.GET("/jobs", { params: { query: { status: ["lost"] } } });
  // Workflows, through `raw`: a chain of a group and a step, checked against the node union.
  await jobgate.raw.POST("/workflows", {
    body: {
      workflow: {
        type: "chain",
        steps: [
          { type: "group", steps: [{ type: "step", job: "echo", args: { message: "a" } }] },
          { type: "step", job: "echo", args: { message: "after the group" } },
        ],
      },
    },
  });
  // @ts-expect-error: `loop` is not a workflow node type
  await jobgate.raw.POST("/workflows", { body: { workflow: { type: "loop", steps: [] } } });
  try {
    await jobgate.submit("echo", { args: { message: "hi" } });
  } catch (error) {
    if (error instanceof JobgateError) {
      const where: (string | number)[][] = (error.problem?.errors ?? []).map((issue) => issue.loc);
      console.log(error.status, error.problem?.type, where);
    } else if (error instanceof JobWaitTimeout) {
      accepted.push(error.job);
    }
  }
  return accepted;
}

// tsc emits no `.d.ts` inputs: copy the generated schema beside the compiled client that imports it.
import { copyFileSync } from "node:fs";

copyFileSync(new URL("../src/schema.d.ts", import.meta.url), new URL("../dist/schema.d.ts", import.meta.url));

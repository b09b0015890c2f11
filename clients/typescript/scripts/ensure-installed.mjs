// Runs before `npm run build` in `prepare`. Installs this package's own dependencies when tsc is
// missing, which is the case when another project installs it from its directory (a `file:`
// dependency, as examples/node does): npm runs this package's `prepare` there, but it only
// links the directory and installs none of its dependencies, dev ones (tsc) or not. Without
// this a fresh clone's `cd examples/node && npm ci` fails with `tsc: not found`; with it, that
// one command installs, builds and links the client. Run by `npm ci` here, it finds tsc and
// does nothing.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const packageDir = fileURLToPath(new URL("..", import.meta.url));

if (!existsSync(new URL("../node_modules/.bin/tsc", import.meta.url))) {
  // The npm that runs this script, not whichever is first on PATH.
  const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ["npm"];
  // `--include=dev`: the installing project's `--omit=dev` reaches us through the environment,
  // and the build needs tsc. `--ignore-scripts`: this script is already the `prepare` step.
  const ci = ["ci", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund"];
  console.error(`@jobgate/client: installing its build tools in ${packageDir}`);
  execFileSync(npm[0], [...npm.slice(1), ...ci, "--prefix", packageDir], {
    cwd: packageDir,
    stdio: "inherit",
  });
}

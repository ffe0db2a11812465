// Runs a wasm32-wasip1 command module in Node's V8 (the engine Envoy embeds)
// and exits with its exit code: node run.mjs <module.wasm>
import { readFileSync } from 'node:fs';
import { WASI } from 'node:wasi';

const wasi = new WASI({ version: 'preview1', args: [process.argv[2]], env: {}, returnOnExit: true });
const module = await WebAssembly.compile(readFileSync(process.argv[2]));
const imports = wasi.getImportObject();
// The filter's proxy-wasm imports: linked, never called by the check.
imports.env = {};
for (const i of WebAssembly.Module.imports(module)) {
  if (i.module === 'env') imports.env[i.name] = () => { throw new Error(`${i.name} called`); };
}
const instance = await WebAssembly.instantiate(module, imports);
// The filter's `_initialize` (proxy-wasm's entry) is not this command's.
const { memory, _start } = instance.exports;
process.exitCode = wasi.start({ exports: { memory, _start } });

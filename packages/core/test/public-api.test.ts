import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/**
 * The exact list of names `@accelerate/core`'s root exports, one a line,
 * sorted, types marked `type`. It is pinned in `public-api.txt` so that a
 * change to the public API is a visible diff in review: after a deliberate
 * change, run `npx vitest run packages/core/test/public-api.test.ts -u` and
 * commit the new file. Names only our own packages need belong in
 * `src/internal.ts` (`@accelerate/core/internal`), not here.
 */
function exportedNames(entry: string): string[] {
  const program = ts.createProgram([entry], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    noEmit: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(entry)!)!;
  return checker
    .getExportsOfModule(moduleSymbol)
    .map((s) => {
      const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
      return target.flags & ts.SymbolFlags.Value ? s.name : `type ${s.name}`;
    })
    .sort((a, b) => (a.replace(/^type /, '') < b.replace(/^type /, '') ? -1 : 1));
}

describe('public API of @accelerate/core', () => {
  const root = fileURLToPath(new URL('../src/index.ts', import.meta.url));
  const internal = fileURLToPath(new URL('../src/internal.ts', import.meta.url));
  const names = exportedNames(root);

  it('the root exports exactly the names in public-api.txt', async () => {
    await expect(names.join('\n') + '\n').toMatchFileSnapshot('./public-api.txt');
  });

  it('@accelerate/core/internal is a superset of the root', () => {
    const all = new Set(exportedNames(internal).map((n) => n.replace(/^type /, '')));
    expect(names.map((n) => n.replace(/^type /, '')).filter((n) => !all.has(n))).toEqual([]);
  });

  it('test knobs are not exported', () => {
    expect(names).not.toContain('SAVE_DELAY_ENV');
  });
});

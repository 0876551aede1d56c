import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { CONFIGURATION_DOC_PATH, renderConfigurationDoc } from '../../scripts/gen-config-doc.js'
import { CONFIG_RULES, EnvSchema } from '../../src/config.js'

describe('docs/configuration.md', () => {
  it('is what `npm run docs:config` renders from the config schema (rerun it after changing src/config.ts)', () => {
    const committed = readFileSync(CONFIGURATION_DOC_PATH, 'utf8')
    expect(committed, 'docs/configuration.md is out of date: run `npm run docs:config`').toBe(renderConfigurationDoc())
  })

  it('has one row per variable, with its default and its range', () => {
    const doc = renderConfigurationDoc()
    for (const [name, schema] of Object.entries(EnvSchema.properties as Record<string, { default?: unknown; minimum?: number; maximum?: number }>)) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${name}\` |`))
      expect(row, name).toBeDefined()
      if (schema.default !== undefined) expect(row, name).toContain(`\`${String(schema.default)}\``)
      if (schema.minimum !== undefined && schema.maximum !== undefined) expect(row, name).toContain(`${schema.minimum}–${schema.maximum}`)
    }
  })

  it('lists every rule between variables that loadConfig enforces (CONFIG_RULES), and no other', () => {
    const doc = renderConfigurationDoc()
    const section = doc.slice(doc.indexOf('## Cross-field rules'))
    const listed = section.split('\n').filter((line) => line.startsWith('- '))
    expect(listed).toEqual(CONFIG_RULES.map((r) => `- ${r.rule}`))
  })
})

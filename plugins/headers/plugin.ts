import { z } from 'zod'
import { definePlugin } from '../../src/plugin.ts'

// Placeholder replaced by the real plugin in this session.
export default definePlugin({
  name: 'headers',
  schema: z.strictObject({}),
  create () { return {} },
})

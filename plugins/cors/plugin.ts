import { z } from 'zod'
import { definePlugin } from '../../src/plugin.ts'

// Placeholder replaced by the real plugin in this session.
export default definePlugin({
  name: 'cors',
  schema: z.strictObject({}),
  create () { return {} },
})

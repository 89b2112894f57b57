/**
 * Forecasting and anomaly detection for per-route request rates: plain
 * TypeScript, no gRPC, no store, no dependencies, so the control plane, the
 * rules engine, the backtester and an external scorer all use the same code.
 *
 * - `createForecaster({ stepSeconds })`: robust double-seasonal Holt-Winters
 *   (daily × weekly) with fitted parameters and prediction intervals.
 * - `createDetector({ stepSeconds })`: a score in [0, 1] per point; ≥ 0.5 is
 *   an alert.
 * - `Slicer`: runs a refit (`forecaster.refitting()`, `detector.observing()`)
 *   in slices between turns of the event loop; `runJob` runs one at once.
 * - metrics: `mase`, `smape`, `mape`, `precisionRecallF1` (and the
 *   point-adjusted and event-level variants) used by `evaluate.ts`.
 *
 * @example
 * import { createForecaster, createDetector } from './control-plane/forecast/index.ts'
 *
 * const forecaster = createForecaster({ stepSeconds: 300 })
 * const detector = createDetector({ stepSeconds: 300 })
 * for (const { t, requests } of series) {
 *   forecaster.observe(t, requests)
 *   if (detector.observe(t, requests) >= 0.5) console.log('anomaly at', t)
 * }
 * forecaster.forecast(24)        // the next 2 hours, 24 five-minute steps
 * forecaster.interval(24, 0.9)   // 90% prediction intervals
 */
export { createForecaster } from './forecaster.ts'
export type { Forecaster, ForecasterOptions, ForecasterDescription, PredictionInterval } from './forecaster.ts'
export { createDetector } from './detector.ts'
export type { Detector, DetectorOptions, DetectorDescription } from './detector.ts'
export { runJob, Slicer } from './job.ts'
export type { Job } from './job.ts'
export { mae, mase, naiveScale, smape, mape, precisionRecallF1, pointAdjustedF1, eventPrecisionRecallF1 } from './metrics.ts'
export type { DetectionScore } from './metrics.ts'

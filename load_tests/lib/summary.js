// handleSummary for every scenario: the JSON report (k6's summary data plus
// the run's stamp: commit, cores, memory, kernel, generator CPU share) at
// REPORT_PATH, a text summary beside it, and one line per threshold on stdout.
// scripts/load sets REPORT_PATH and the stamp; without them only stdout is written.

function fmt(v) {
  if (typeof v !== 'number') return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3);
}

// "name{tag}  expression  ok|FAILED  (value)" for every threshold.
export function thresholdLines(data) {
  const lines = [];
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [expr, t] of Object.entries(m.thresholds || {})) {
      const shown = Object.entries(m.values).map(([k, v]) => `${k}=${fmt(v)}`).join(' ');
      lines.push(`threshold ${t.ok ? 'ok    ' : 'FAILED'} ${name}: ${expr}  (${shown})`);
    }
  }
  return lines.sort();
}

export function textSummary(data, scenario) {
  const out = [`scenario ${scenario}`];
  for (const [name, m] of Object.entries(data.metrics).sort()) {
    out.push(`  ${name.padEnd(40)} ${Object.entries(m.values).map(([k, v]) => `${k}=${fmt(v)}`).join(' ')}`);
  }
  return out.concat(thresholdLines(data).map((l) => `  ${l}`)).join('\n') + '\n';
}

export function summaryFor(scenario) {
  return function handleSummary(data) {
    const stamp = {
      scenario,
      profile: __ENV.PROFILE || 'smoke',
      base_url: __ENV.BASE_URL || '',
      commit: __ENV.STAMP_COMMIT || 'unknown',
      cores: __ENV.STAMP_CORES || 'unknown',
      memory: __ENV.STAMP_MEMORY || 'unknown',
      kernel: __ENV.STAMP_KERNEL || 'unknown',
      finished_utc: new Date().toISOString(),
    };
    // A worker pass with one intake mode consuming (scripts/load, full profile).
    if (__ENV.WORKER_INTAKE) stamp.intake = __ENV.WORKER_INTAKE;
    // The distant-viewer experiment's one-way delay (scripts/load distant).
    if (__ENV.DISTANCE_MS) stamp.distance_ms = Number(__ENV.DISTANCE_MS);
    const report = { stamp, setup: data.setup_data || null, metrics: data.metrics, state: data.state };
    const text = textSummary(data, scenario);
    const out = { stdout: thresholdLines(data).join('\n') + '\n' };
    if (__ENV.REPORT_PATH) {
      out[__ENV.REPORT_PATH] = JSON.stringify(report, null, 1);
      out[__ENV.REPORT_PATH.replace(/\.json$/, '.txt')] = text;
    }
    return out;
  };
}

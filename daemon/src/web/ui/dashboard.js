// Vigil web UI: dashboard (placeholder; filled in by issue 15).
export {};

// Vigil web UI: timeline (placeholder; filled in by issue 15).
export {};

// Vigil web UI: admin (placeholder; filled in by issue 15).
export {};

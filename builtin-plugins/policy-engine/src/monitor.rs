//! Policy hot reload (placeholder).

//! Helpers for dpf's black-box tests.

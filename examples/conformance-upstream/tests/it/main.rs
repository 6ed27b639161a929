//! Integration tests of the conformance fixture over real HTTP: the 2026-07-28 stateless wire,
//! a multi round-trip (`input_required`) exchange with sealed state, and refused tampering.

mod modern;
mod support;

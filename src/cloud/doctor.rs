//! `nodepool doctor`: checks one provider end to end without changing anything.

pub mod events;
pub mod router;
pub mod session;

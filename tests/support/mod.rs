pub mod apiserver;
pub mod netrpc_host;

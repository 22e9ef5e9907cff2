pub mod netrpc_host;

pub mod apiserver;
pub mod go_build;
pub mod mock_controller;
pub mod netrpc_host;

pub mod apiserver;
pub mod mock_controller;
pub mod netrpc_host;

//! Domain errors, and their mapping to gRPC status in one place.

use crate::store::StoreError;
use vakt_proto::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        use tonic::Status;
        match err {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::NotFound(m) => Status::not_found(m),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Store(StoreError::TooManyPoints(n)) => {
                Status::resource_exhausted(StoreError::TooManyPoints(n).to_string())
            }
            // The caller gets a short message; the details are logged here,
            // once, where the error is handled.
            Error::Store(e) => {
                tracing::error!(error = %e, "storage failure");
                Status::internal("storage failure; see the collector's log")
            }
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; see the collector's log")
            }
        }
    }
}

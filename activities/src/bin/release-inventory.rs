//! The ReleaseInventory activity as a Lambda function (see `activities::lambda`).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    activities::lambda::serve("ReleaseInventory").await
}

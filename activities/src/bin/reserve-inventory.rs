//! The ReserveInventory activity as a Lambda function (see `activities::lambda`).

fn main() -> Result<(), lambda_runtime::Error> {
    activities::lambda::main("ReserveInventory")
}

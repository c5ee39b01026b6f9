//! The ReserveAmendment activity (an order's amendment) as a Lambda function (see `activities::lambda`).

fn main() -> Result<(), lambda_runtime::Error> {
    activities::lambda::main("ReserveAmendment")
}

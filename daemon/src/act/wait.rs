//! `wait`: pause between steps (let a pool drain, a cache warm).

use serde::Deserialize;
use serde_json::{json, Value};

use super::{typed, Action, ActionError, Ctx, ParamIssue};
use crate::config::PromDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    duration: PromDuration,
}

pub struct Wait;

#[async_trait::async_trait]
impl Action for Wait {
    fn name(&self) -> &'static str {
        "wait"
    }

    fn validate(&self, params: &Value) -> Result<(), ParamIssue> {
        typed::<Params>(params).map(|_| ())
    }

    fn describe(&self, params: &Value) -> String {
        match typed::<Params>(params) {
            Ok(p) => format!("wait {}", p.duration),
            Err(e) => format!("wait (invalid: {})", e.message),
        }
    }

    async fn execute(&self, _ctx: &Ctx<'_>, params: &Value) -> Result<Value, ActionError> {
        let p: Params = typed(params).map_err(|e| ActionError::Params(e.message))?;
        tokio::time::sleep(p.duration.0).await;
        Ok(json!({ "waited_seconds": p.duration.0.as_secs_f64() }))
    }
}

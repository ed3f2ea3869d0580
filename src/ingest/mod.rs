//! Getting events in: files (`pulse import`, export pickup), and webhooks (`pulse serve`:
//! [`server`] verifies [`crate::signature`]s, [`adapters`] map platform payloads to canonical events,
//! and the spool keeps them durable until they move to the lake). Live platform callbacks:
//! [`platforms`] (Slack Events API, DingTalk robot), [`wecom`] (企业微信, WXBizMsgCrypt) and
//! [`feishu`] (飞书 / Lark event v2). Spreadsheets (xlsx, CSV in UTF-8 or GBK) through a mapping:
//! [`table`].

pub mod adapters;
mod blocks;
pub mod dingtalk;
pub mod exports;
pub mod feishu;
pub mod files;
pub mod platforms;
pub mod server;
pub mod table;
pub mod wecom;

"""Slack credentials and endpoints, from Slack's own environment variable names."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLACK_", env_file=".env", extra="ignore")

    bot_token: str = ""  # xoxb-…: Web API calls
    signing_secret: str = ""  # verifies every request Slack sends in HTTP mode
    app_token: str = ""  # xapp-…: Socket Mode only
    api_base_url: str = "https://slack.com/api/"

    @property
    def http_enabled(self) -> bool:
        return bool(self.bot_token and self.signing_secret)

<?php

namespace System\Console;

defined('DS') or exit('No direct access.');

use System\Container;

if (!Container::registered('command: websocket')) {
    Container::singleton('command: websocket', function () {
        return new Commands\Websocket();
    });
}

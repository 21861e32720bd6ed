<?php

namespace System;

defined('DS') or exit('No direct access.');

class Container
{
    public static $registry = [];
    public static $singletons = [];

    public static function singleton($name, $resolver)
    {
        static::$registry[$name] = $resolver;
    }

    public static function registered($name)
    {
        return isset(static::$registry[$name]);
    }

    public static function resolve($name)
    {
        if (!isset(static::$singletons[$name])) {
            static::$singletons[$name] = call_user_func(static::$registry[$name]);
        }
        return static::$singletons[$name];
    }
}
